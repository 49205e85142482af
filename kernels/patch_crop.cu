// Gather the 2K patches of one frame into the engine's input batch in one launch.
// NumPy reference: edge_guard/crop.py (crop_patches, crop_patches_nchw).
//
// frame: (H, W, 3) uint8 on the device, rows `pitch` bytes apart (W*3 when packed).
// pairs: (K, 4) int32 top-lefts [y1, x1, y2, x2]; pair i fills batch entries 2i and 2i+1.
// swap:  non-zero reverses the channel order (BGR <-> RGB).
// grid (2K, s): one block per output row of one patch. The host checks the patches lie
// inside the frame; the kernel trusts it.

__device__ __forceinline__ const unsigned char* patch_row(const unsigned char* frame, int pitch,
                                                          const int* pairs, int n, int y)
{
    const int* tl = pairs + 4 * (n >> 1) + 2 * (n & 1);
    return frame + (size_t)(tl[0] + y) * (size_t)pitch + (size_t)tl[1] * 3;
}

// out: (2K, s, s, 3) uint8 -- the preferred layout: the ONNX graph normalises.
extern "C" __global__ void crop_u8_nhwc(const unsigned char* __restrict__ frame, int pitch,
                                        const int* __restrict__ pairs, int s, int swap,
                                        unsigned char* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, pairs, n, y);
    unsigned char* dst = out + ((size_t)n * s + y) * (size_t)s * 3;
    const int row = 3 * s;
    for (int i = threadIdx.x; i < row; i += blockDim.x) {
        const int ch = i % 3;
        dst[i] = src[swap ? i - ch + 2 - ch : i];
    }
}

// Normalised value of channel c: float32(float32(pixel * scale[c]) + bias[c]). The _rn
// intrinsics keep the compiler from fusing a multiply-add, so the result equals NumPy's.
__device__ __forceinline__ float normalise(unsigned char v, float scale, float bias)
{
    return __fadd_rn(__fmul_rn((float)v, scale), bias);
}

__device__ __forceinline__ unsigned short to_half_bits(float v)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));  // round to nearest even, like NumPy
    return h;
}

// out: (2K, 3, s, s) float32.
extern "C" __global__ void crop_norm_nchw_f32(const unsigned char* __restrict__ frame, int pitch,
                                              const int* __restrict__ pairs, int s, int swap,
                                              float scale0, float scale1, float scale2,
                                              float bias0, float bias1, float bias2,
                                              float* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, pairs, n, y);
    const size_t plane = (size_t)s * s;
    float* dst = out + (size_t)n * 3 * plane + (size_t)y * s;
    const int c0 = swap ? 2 : 0, c2 = swap ? 0 : 2;
    for (int x = threadIdx.x; x < s; x += blockDim.x) {
        const unsigned char* px = src + 3 * x;
        dst[x] = normalise(px[c0], scale0, bias0);
        dst[plane + x] = normalise(px[1], scale1, bias1);
        dst[2 * plane + x] = normalise(px[c2], scale2, bias2);
    }
}

// out: (2K, 3, s, s) float16, stored as its bit pattern.
extern "C" __global__ void crop_norm_nchw_f16(const unsigned char* __restrict__ frame, int pitch,
                                              const int* __restrict__ pairs, int s, int swap,
                                              float scale0, float scale1, float scale2,
                                              float bias0, float bias1, float bias2,
                                              unsigned short* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, pairs, n, y);
    const size_t plane = (size_t)s * s;
    unsigned short* dst = out + (size_t)n * 3 * plane + (size_t)y * s;
    const int c0 = swap ? 2 : 0, c2 = swap ? 0 : 2;
    for (int x = threadIdx.x; x < s; x += blockDim.x) {
        const unsigned char* px = src + 3 * x;
        dst[x] = to_half_bits(normalise(px[c0], scale0, bias0));
        dst[plane + x] = to_half_bits(normalise(px[1], scale1, bias1));
        dst[2 * plane + x] = to_half_bits(normalise(px[c2], scale2, bias2));
    }
}
