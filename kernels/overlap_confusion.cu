// Spatial-consistency scoring on the GPU: the confusion matrix of every compared region, its
// score (the bundle's statistic), and the frame's mean score.
// NumPy reference: edge_guard/consistency.py.
//
// Two ways to form the K regions (one kernel each), one scoring path:
// - overlap_confusion (pairs): labels (2K, s, s) LABEL_T, the engine's output; pair i owns
//   patches 2i and 2i+1; pairs (K, 4) int32 top-lefts [y1, x1, y2, x2] (only the displacement
//   matters); rows of cm[i] = patch 2i, columns = patch 2i+1, on their overlap.
// - frame_confusion (patch vs frame): labels (K, s, s) LABEL_T, frame (H, W) FRAME_T (the
//   full-frame engine's output, or the caller's labels); tops (K, 2) int32 [y, x]; rows of
//   cm[i] = patch i, columns = the frame's labels under it.
// Labels outside [0, C) are ignored in either map (compared as unsigned, so negatives too).
//
// Stream order (one host call): memset cm -> *_confusion -> confusion_score -> mean_score.
// Integer counts merge with atomics (order-free); every floating-point sum runs on one thread
// in a fixed order so the results equal the NumPy reference bit for bit.

#ifndef LABEL_T
#define LABEL_T int
#endif
#ifndef FRAME_T
#define FRAME_T int
#endif
#ifndef MAX_CLASSES
#define MAX_CLASSES 64
#endif

typedef LABEL_T label_t;
typedef FRAME_T frame_t;

// Statistic codes (edge_guard.kernels.ops.STATISTIC_CODES).
#define STAT_MIOU 0
#define STAT_AGREEMENT 1
#define STAT_MIOU_MIN 2

// Block-wide: count rows blockIdx.y, blockIdx.y + gridDim.y, ... of an h x w region compared
// between map A (rows a_pitch elements apart) and map B (b_pitch) into a shared C x C
// histogram, then add its non-zero bins to `out` (C, C) uint32, which the host zeroed.
template <typename TA, typename TB>
__device__ void count_region(const TA* A, int a_pitch, const TB* B, int b_pitch, int h, int w,
                             int C, unsigned int* hist, unsigned int* out)
{
    const int cc = C * C;
    for (int i = threadIdx.x; i < cc; i += blockDim.x) hist[i] = 0u;
    __syncthreads();
    const unsigned int lane = threadIdx.x & 31u;
    // Every thread of the block runs the same number of iterations (the bounds depend only
    // on the block), so whole warps reach __match_any_sync together.
    for (int r = blockIdx.y; r < h; r += gridDim.y) {
        const TA* rowA = A + (size_t)r * a_pitch;
        const TB* rowB = B + (size_t)r * b_pitch;
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
    for (int i = threadIdx.x; i < cc; i += blockDim.x) {
        const unsigned int v = hist[i];
        if (v) atomicAdd(&out[i], v);
    }
}

// grid (K, blocks_per_region), block a multiple of 32 threads, dynamic shared memory C*C*4.
extern "C" __global__ void overlap_confusion(const label_t* __restrict__ labels,
                                             const int* __restrict__ pairs,
                                             int s, int C,
                                             unsigned int* __restrict__ cm)
{
    extern __shared__ unsigned int hist[];
    const int p = blockIdx.x;
    const int dy = pairs[4 * p + 2] - pairs[4 * p + 0];
    const int dx = pairs[4 * p + 3] - pairs[4 * p + 1];
    const int ay = max(dy, 0), ax = max(dx, 0), by = max(-dy, 0), bx = max(-dx, 0);
    const size_t plane = (size_t)s * (size_t)s;
    const label_t* A = labels + (size_t)(2 * p) * plane;
    const label_t* B = A + plane;
    count_region<label_t, label_t>(A + (size_t)ay * s + ax, s, B + (size_t)by * s + bx, s,
                                   s - abs(dy), s - abs(dx), C, hist, cm + (size_t)p * C * C);
}

// grid (K, blocks_per_region), block a multiple of 32 threads, dynamic shared memory C*C*4.
// frame_width: W, the frame's row length in elements.
extern "C" __global__ void frame_confusion(const label_t* __restrict__ labels,
                                           const frame_t* __restrict__ frame, int frame_width,
                                           const int* __restrict__ tops,
                                           int s, int C,
                                           unsigned int* __restrict__ cm)
{
    extern __shared__ unsigned int hist[];
    const int p = blockIdx.x;
    const label_t* A = labels + (size_t)p * (size_t)s * (size_t)s;
    const frame_t* B = frame + (size_t)tops[2 * p] * frame_width + tops[2 * p + 1];
    count_region<label_t, frame_t>(A, s, B, frame_width, s, s, C, hist, cm + (size_t)p * C * C);
}

// grid K, block MAX_CLASSES threads: thread t sums class t's row and column, thread 0 turns
// them into the statistic (consistency.score_from_confusion):
//   miou / miou-min: mean over present classes of n_ii / (row_i + col_i - n_ii), a class
//   present when its union is > 0 (miou-min: and row_i or col_i >= min_pixels);
//   agreement: trace / total.
// No valid pixel (or no present class) gives 1.0, as in the reference.
extern "C" __global__ void confusion_score(const unsigned int* __restrict__ cm, int C,
                                           int statistic, int min_pixels,
                                           float* __restrict__ score)
{
    __shared__ unsigned long long rows[MAX_CLASSES], cols[MAX_CLASSES], diag[MAX_CLASSES];
    const int p = blockIdx.x;
    const int t = threadIdx.x;
    const unsigned int* M = cm + (size_t)p * C * C;
    if (t < C) {
        unsigned long long row = 0, col = 0;
        for (int j = 0; j < C; ++j) {
            row += M[t * C + j];
            col += M[j * C + t];
        }
        rows[t] = row;
        cols[t] = col;
        diag[t] = M[t * C + t];
    }
    __syncthreads();
    if (t != 0) return;
    if (statistic == STAT_AGREEMENT) {
        unsigned long long hits = 0, total = 0;
        for (int i = 0; i < C; ++i) {
            hits += diag[i];
            total += rows[i];
        }
        score[p] = total > 0 ? (float)((double)hits / (double)total) : 1.0f;
        return;
    }
    const unsigned long long least = statistic == STAT_MIOU_MIN ? (unsigned long long)min_pixels : 0ull;
    double total = 0.0;
    int n = 0;
    for (int i = 0; i < C; ++i) {
        const unsigned long long uni = rows[i] + cols[i] - diag[i];
        const bool present = uni > 0 && (rows[i] >= least || cols[i] >= least);
        // Absent classes add 0.0, as in the reference's cumsum.
        total += present ? (double)diag[i] / (double)uni : 0.0;
        n += present;
    }
    score[p] = n > 0 ? (float)(total / (double)n) : 1.0f;
}

// grid 1, block 1: score = float32(sum_i double(scores[i]) / K), summed in region order.
extern "C" __global__ void mean_score(const float* __restrict__ scores, int K,
                                      float* __restrict__ score)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < K; ++i) total += (double)scores[i];
        *score = (float)(total / (double)K);
    }
}
