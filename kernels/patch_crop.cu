// Gather the patches of one frame into the engine's input batch in one launch.
// NumPy reference: edge_guard/crop.py (crop_tops, crop_patches, crop_patches_nchw).
//
// frame: (H, W, 3) uint8 on the device, rows `pitch` bytes apart (W*3 when packed).
// tops:  (N, 2) int32 top-lefts [y, x]; entry n of the batch is the ph x pw region at tops[n].
//        Pairs (K, 4) [y1, x1, y2, x2] are the same memory as (2K, 2) tops: pair i fills
//        entries 2i and 2i+1.
// swap:  non-zero reverses the channel order (BGR <-> RGB).
// grid (N, ph): one block per output row of one patch. The host checks the patches lie
// inside the frame; the kernel trusts it. A whole-frame "patch" (tops [0, 0], ph = H,
// pw = W) with swap copies the frame into the other channel order.

__device__ __forceinline__ const unsigned char* patch_row(const unsigned char* frame, int pitch,
                                                          const int* tops, int n, int y)
{
    const int* tl = tops + 2 * n;
    return frame + (size_t)(tl[0] + y) * (size_t)pitch + (size_t)tl[1] * 3;
}

// out: (N, ph, pw, 3) uint8 -- the preferred layout: the ONNX graph normalises.
extern "C" __global__ void crop_u8_nhwc(const unsigned char* __restrict__ frame, int pitch,
                                        const int* __restrict__ tops, int ph, int pw, int swap,
                                        unsigned char* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, tops, n, y);
    unsigned char* dst = out + ((size_t)n * ph + y) * (size_t)pw * 3;
    const int row = 3 * pw;
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

// out: (N, 3, ph, pw) float32.
extern "C" __global__ void crop_norm_nchw_f32(const unsigned char* __restrict__ frame, int pitch,
                                              const int* __restrict__ tops, int ph, int pw, int swap,
                                              float scale0, float scale1, float scale2,
                                              float bias0, float bias1, float bias2,
                                              float* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, tops, n, y);
    const size_t plane = (size_t)ph * pw;
    float* dst = out + (size_t)n * 3 * plane + (size_t)y * pw;
    const int c0 = swap ? 2 : 0, c2 = swap ? 0 : 2;
    for (int x = threadIdx.x; x < pw; x += blockDim.x) {
        const unsigned char* px = src + 3 * x;
        dst[x] = normalise(px[c0], scale0, bias0);
        dst[plane + x] = normalise(px[1], scale1, bias1);
        dst[2 * plane + x] = normalise(px[c2], scale2, bias2);
    }
}

// out: (N, 3, ph, pw) float16, stored as its bit pattern.
extern "C" __global__ void crop_norm_nchw_f16(const unsigned char* __restrict__ frame, int pitch,
                                              const int* __restrict__ tops, int ph, int pw, int swap,
                                              float scale0, float scale1, float scale2,
                                              float bias0, float bias1, float bias2,
                                              unsigned short* __restrict__ out)
{
    const int n = blockIdx.x, y = blockIdx.y;
    const unsigned char* src = patch_row(frame, pitch, tops, n, y);
    const size_t plane = (size_t)ph * pw;
    unsigned short* dst = out + (size_t)n * 3 * plane + (size_t)y * pw;
    const int c0 = swap ? 2 : 0, c2 = swap ? 0 : 2;
    for (int x = threadIdx.x; x < pw; x += blockDim.x) {
        const unsigned char* px = src + 3 * x;
        dst[x] = to_half_bits(normalise(px[c0], scale0, bias0));
        dst[plane + x] = to_half_bits(normalise(px[1], scale1, bias1));
        dst[2 * plane + x] = to_half_bits(normalise(px[c2], scale2, bias2));
    }
}
