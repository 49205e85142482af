// Spatial-consistency scoring on the GPU: the confusion matrix of every patch pair's overlap,
// its mIoU, and the frame's mean score. NumPy reference: edge_guard/consistency.py.
//
// labels: (2K, s, s) LABEL_T, the engine's output; pair i owns patches 2i and 2i+1.
// pairs:  (K, 4) int32 top-lefts [y1, x1, y2, x2]; only the displacement matters here.
// Labels outside [0, C) are ignored in either map (compared as unsigned, so negatives too).
//
// Stream order (one host call): memset cm -> overlap_confusion -> pair_miou -> mean_score.
// Integer counts merge with atomics (order-free); every floating-point sum runs on one thread
// in a fixed order so the results equal the NumPy reference bit for bit.

#ifndef LABEL_T
#define LABEL_T int
#endif
#ifndef MAX_CLASSES
#define MAX_CLASSES 64
#endif

typedef LABEL_T label_t;

// grid (K, blocks_per_pair), dynamic shared memory C*C*4 bytes.
// Block (p, j) counts rows j, j + gridDim.y, ... of pair p's overlap into a shared histogram,
// then adds its non-zero bins to cm[p] (K, C, C) uint32, which the host zeroed.
extern "C" __global__ void overlap_confusion(const label_t* __restrict__ labels,
                                             const int* __restrict__ pairs,
                                             int s, int C,
                                             unsigned int* __restrict__ cm)
{
    extern __shared__ unsigned int hist[];
    const int p = blockIdx.x;
    const int cc = C * C;
    for (int i = threadIdx.x; i < cc; i += blockDim.x) hist[i] = 0u;
    __syncthreads();

    const int dy = pairs[4 * p + 2] - pairs[4 * p + 0];
    const int dx = pairs[4 * p + 3] - pairs[4 * p + 1];
    const int ay = max(dy, 0), ax = max(dx, 0), by = max(-dy, 0), bx = max(-dx, 0);
    const int h = s - abs(dy), w = s - abs(dx);
    const size_t plane = (size_t)s * (size_t)s;
    const label_t* A = labels + (size_t)(2 * p) * plane;
    const label_t* B = A + plane;
    const unsigned int lane = threadIdx.x & 31u;

    // Every thread of the block runs the same number of iterations (the bounds depend only
    // on the block), so whole warps reach __match_any_sync together.
    for (int r = blockIdx.y; r < h; r += gridDim.y) {
        const label_t* rowA = A + (size_t)(r + ay) * s + ax;
        const label_t* rowB = B + (size_t)(r + by) * s + bx;
        for (int c0 = 0; c0 < w; c0 += blockDim.x) {
            const int c = c0 + threadIdx.x;
            unsigned int key = 0xffffffffu;
            if (c < w) {
                const unsigned long long a = (unsigned long long)(long long)rowA[c];
                const unsigned long long b = (unsigned long long)(long long)rowB[c];
                if (a < (unsigned long long)C && b < (unsigned long long)C)
                    key = (unsigned int)a * C + (unsigned int)b;
            }
            // Neighbouring pixels mostly share a class pair: one atomic per distinct key in
            // the warp instead of up to 32 colliding ones.
            const unsigned int peers = __match_any_sync(0xffffffffu, key);
            if (key != 0xffffffffu && lane == (unsigned int)(__ffs(peers) - 1))
                atomicAdd(&hist[key], (unsigned int)__popc(peers));
        }
    }
    __syncthreads();
    unsigned int* out = cm + (size_t)p * cc;
    for (int i = threadIdx.x; i < cc; i += blockDim.x) {
        const unsigned int v = hist[i];
        if (v) atomicAdd(&out[i], v);
    }
}

// grid K, block MAX_CLASSES threads: thread t computes class t's IoU, thread 0 sums them.
extern "C" __global__ void pair_miou(const unsigned int* __restrict__ cm, int C,
                                     float* __restrict__ miou)
{
    __shared__ double iou[MAX_CLASSES];
    __shared__ int present[MAX_CLASSES];
    const int p = blockIdx.x;
    const int t = threadIdx.x;
    const unsigned int* M = cm + (size_t)p * C * C;
    if (t < C) {
        unsigned long long row = 0, col = 0;
        for (int j = 0; j < C; ++j) {
            row += M[t * C + j];
            col += M[j * C + t];
        }
        const unsigned long long d = M[t * C + t];
        const unsigned long long uni = row + col - d;
        present[t] = uni > 0;
        iou[t] = uni > 0 ? (double)d / (double)uni : 0.0;
    }
    __syncthreads();
    if (t == 0) {
        double total = 0.0;
        int n = 0;
        for (int i = 0; i < C; ++i) {
            total += iou[i];  // absent classes add 0.0, as in the reference's cumsum
            n += present[i];
        }
        // No valid pixel: no evidence of inconsistency (same rule as the reference).
        miou[p] = n > 0 ? (float)(total / (double)n) : 1.0f;
    }
}

// grid 1, block 1: score = float32(sum_i double(miou[i]) / K), summed in pair order.
extern "C" __global__ void mean_score(const float* __restrict__ miou, int K,
                                      float* __restrict__ score)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < K; ++i) total += (double)miou[i];
        *score = (float)(total / (double)K);
    }
}
