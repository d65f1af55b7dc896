// CUDA kernels of metakd_model::ops (all f32, contiguous). Each mirrors its CPU op in
// model/src/ops: same formulas, same tie and NaN rules; reductions accumulate in double.
// Element loops are grid-stride loops over 64-bit indices.

#include <math.h>

#define GRID_STRIDE(i, n) \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// Block-wide sum of two doubles; every thread gets the totals. blockDim.x is a multiple of 32,
// at most 1024.
__device__ void block_sum2(double &a, double &b) {
    __shared__ double sa[32];
    __shared__ double sb[32];
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1) {
        a += __shfl_down_sync(0xffffffffu, a, offset);
        b += __shfl_down_sync(0xffffffffu, b, offset);
    }
    __syncthreads();
    if (lane == 0) {
        sa[warp] = a;
        sb[warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        unsigned int warps = blockDim.x >> 5;
        a = lane < warps ? sa[lane] : 0.0;
        b = lane < warps ? sb[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) {
            a += __shfl_down_sync(0xffffffffu, a, offset);
            b += __shfl_down_sync(0xffffffffu, b, offset);
        }
        if (lane == 0) {
            sa[0] = a;
            sb[0] = b;
        }
    }
    __syncthreads();
    a = sa[0];
    b = sb[0];
    __syncthreads();
}

// The kernels over planes (a sample's channel, or a group's span) launch one block per chunk of
// `chunk_len` consecutive values of a plane of `len` values, `chunks` blocks per plane, so that
// large planes spread over the whole GPU. Block b covers chunk b % chunks of plane b / chunks.
struct Chunk {
    unsigned long long plane, begin, end;
};

__device__ Chunk block_chunk(unsigned long long len, unsigned long long chunks,
                             unsigned long long chunk_len) {
    Chunk c;
    c.plane = blockIdx.x / chunks;
    c.begin = (blockIdx.x % chunks) * chunk_len;
    c.end = c.begin + chunk_len < len ? c.begin + chunk_len : len;
    return c;
}

// ---- LeakyReLU -------------------------------------------------------------------------------

extern "C" __global__ void leaky_relu(const float *x, float *y, unsigned long long n, float slope) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = v > 0.0f ? v : v * slope;
    }
}

extern "C" __global__ void leaky_relu_grad(const float *x, const float *g, float *out,
                                           unsigned long long n, float slope) {
    GRID_STRIDE(i, n) { out[i] = x[i] > 0.0f ? g[i] : g[i] * slope; }
}

extern "C" __global__ void add_leaky_relu(const float *a, const float *b, float *y,
                                          unsigned long long n, float slope) {
    GRID_STRIDE(i, n) {
        float z = a[i] + b[i];
        y[i] = z > 0.0f ? z : z * slope;
    }
}

// ---- Per-channel bias ------------------------------------------------------------------------

extern "C" __global__ void add_channel_bias(const float *x, const float *bias, float *y,
                                            unsigned long long inner, unsigned long long chunks,
                                            unsigned long long chunk_len, unsigned long long c) {
    Chunk k = block_chunk(inner, chunks, chunk_len);
    float b = bias[k.plane % c];
    const float *xp = x + k.plane * inner;
    float *yp = y + k.plane * inner;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x)
        yp[i] = xp[i] + b;
}

// Σ of each chunk of each plane, in block order.
extern "C" __global__ void chunk_sums(const float *x, double *partial, unsigned long long len,
                                      unsigned long long chunks, unsigned long long chunk_len) {
    Chunk k = block_chunk(len, chunks, chunk_len);
    const float *plane = x + k.plane * len;
    double sum = 0.0, unused = 0.0;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x) sum += plane[i];
    block_sum2(sum, unused);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// One thread per channel: the sum of its chunks over the batch.
extern "C" __global__ void channel_sums(const double *partial, float *out,
                                        unsigned long long batch, unsigned long long c,
                                        unsigned long long chunks) {
    GRID_STRIDE(ch, c) {
        double sum = 0.0;
        for (unsigned long long s = 0; s < batch; ++s)
            for (unsigned long long k = 0; k < chunks; ++k) sum += partial[(s * c + ch) * chunks + k];
        out[ch] = (float)sum;
    }
}

// ---- Group norm ------------------------------------------------------------------------------
// Spans are a sample's group (per_group consecutive channel planes of `voxels` values); plane p
// belongs to span p / per_group and channel p % c.

// Σx and Σx² of each chunk of each span, in block order.
extern "C" __global__ void group_norm_partial_moments(const float *x, double *partial_sum,
                                                      double *partial_squares,
                                                      unsigned long long span_len,
                                                      unsigned long long chunks,
                                                      unsigned long long chunk_len) {
    Chunk k = block_chunk(span_len, chunks, chunk_len);
    const float *span = x + k.plane * span_len;
    double sum = 0.0, squares = 0.0;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x) {
        double v = span[i];
        sum += v;
        squares += v * v;
    }
    block_sum2(sum, squares);
    if (threadIdx.x == 0) {
        partial_sum[blockIdx.x] = sum;
        partial_squares[blockIdx.x] = squares;
    }
}

// One thread per span: mean and 1/sqrt(biased var + eps) from its chunks' sums.
extern "C" __global__ void group_norm_stats(const double *partial_sum,
                                            const double *partial_squares, float *mean,
                                            float *rstd, unsigned long long spans,
                                            unsigned long long chunks,
                                            unsigned long long span_len, double eps) {
    GRID_STRIDE(s, spans) {
        double sum = 0.0, squares = 0.0;
        for (unsigned long long k = 0; k < chunks; ++k) {
            sum += partial_sum[s * chunks + k];
            squares += partial_squares[s * chunks + k];
        }
        double n = (double)span_len;
        double m = sum / n;
        double var = fmax(squares / n - m * m, 0.0);
        mean[s] = (float)m;
        rstd[s] = (float)(1.0 / sqrt(var + eps));
    }
}

__device__ float activation_factor(float z, int has_slope, float slope) {
    return (has_slope && z <= 0.0f) ? slope : 1.0f;
}

// The per-plane constants of the normalisation: x̂ = (x − mean)·rstd, z = x·scale + shift.
struct PlaneNorm {
    unsigned long long span, channel;
    float mean, rstd, gamma, scale, shift;
};

__device__ PlaneNorm plane_norm(unsigned long long plane, const float *gamma, const float *beta,
                                const float *mean, const float *rstd,
                                unsigned long long per_group, unsigned long long c) {
    PlaneNorm p;
    p.span = plane / per_group;
    p.channel = plane % c;
    p.mean = mean[p.span];
    p.rstd = rstd[p.span];
    p.gamma = gamma[p.channel];
    p.scale = p.gamma * p.rstd;
    p.shift = beta[p.channel] - p.mean * p.scale;
    return p;
}

// How the kernels over (sample, channel) planes see a norm: planes of `voxels` values in
// `chunks` chunks of `chunk_len`, `per_group` planes per span, `c` channels, and the LeakyReLU
// that may follow.
struct NormPlanes {
    unsigned long long voxels, chunks, chunk_len, per_group, c;
    int has_slope;
    float slope;
};

extern "C" __global__ void group_norm_apply(const float *x, const float *gamma, const float *beta,
                                            const float *mean, const float *rstd, float *y,
                                            NormPlanes n) {
    Chunk k = block_chunk(n.voxels, n.chunks, n.chunk_len);
    PlaneNorm p = plane_norm(k.plane, gamma, beta, mean, rstd, n.per_group, n.c);
    const float *xp = x + k.plane * n.voxels;
    float *yp = y + k.plane * n.voxels;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x) {
        float z = xp[i] * p.scale + p.shift;
        yp[i] = (n.has_slope && !(z > 0.0f)) ? z * n.slope : z;
    }
}

// Σ d and Σ d·x̂ of each chunk of each (sample, channel) plane, d = dy · the activation's factor.
extern "C" __global__ void group_norm_partial_grad_sums(const float *x, const float *dy,
                                                        const float *gamma, const float *beta,
                                                        const float *mean, const float *rstd,
                                                        double *partial_d,
                                                        double *partial_dxhat, NormPlanes n) {
    Chunk k = block_chunk(n.voxels, n.chunks, n.chunk_len);
    PlaneNorm p = plane_norm(k.plane, gamma, beta, mean, rstd, n.per_group, n.c);
    const float *xp = x + k.plane * n.voxels;
    const float *gp = dy + k.plane * n.voxels;
    double sd = 0.0, sdx = 0.0;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x) {
        float v = xp[i];
        float d = gp[i] * activation_factor(v * p.scale + p.shift, n.has_slope, n.slope);
        sd += d;
        sdx += (double)(d * ((v - p.mean) * p.rstd));
    }
    block_sum2(sd, sdx);
    if (threadIdx.x == 0) {
        partial_d[blockIdx.x] = sd;
        partial_dxhat[blockIdx.x] = sdx;
    }
}

// One thread per span: mean(γ·d) and mean(γ·d·x̂) over the span.
extern "C" __global__ void group_norm_span_means(const double *partial_d,
                                                 const double *partial_dxhat,
                                                 const float *gamma, float *mean_g,
                                                 float *mean_g_xhat, unsigned long long spans,
                                                 unsigned long long per_group,
                                                 unsigned long long c, unsigned long long chunks,
                                                 unsigned long long span_len) {
    GRID_STRIDE(s, spans) {
        double mg = 0.0, mgx = 0.0, n = (double)span_len;
        for (unsigned long long j = 0; j < per_group; ++j) {
            unsigned long long plane = s * per_group + j;
            double d = 0.0, dxhat = 0.0;
            for (unsigned long long k = 0; k < chunks; ++k) {
                d += partial_d[plane * chunks + k];
                dxhat += partial_dxhat[plane * chunks + k];
            }
            double g = gamma[plane % c];
            mg += g * d / n;
            mgx += g * dxhat / n;
        }
        mean_g[s] = (float)mg;
        mean_g_xhat[s] = (float)mgx;
    }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)), g = γ · d.
extern "C" __global__ void group_norm_dx(const float *x, const float *dy, const float *gamma,
                                         const float *beta, const float *mean, const float *rstd,
                                         const float *mean_g, const float *mean_g_xhat, float *dx,
                                         NormPlanes n) {
    Chunk k = block_chunk(n.voxels, n.chunks, n.chunk_len);
    PlaneNorm p = plane_norm(k.plane, gamma, beta, mean, rstd, n.per_group, n.c);
    float mg = mean_g[p.span], mgx = mean_g_xhat[p.span];
    const float *xp = x + k.plane * n.voxels;
    const float *gp = dy + k.plane * n.voxels;
    float *dxp = dx + k.plane * n.voxels;
    for (unsigned long long i = k.begin + threadIdx.x; i < k.end; i += blockDim.x) {
        float v = xp[i];
        float g = gp[i] * activation_factor(v * p.scale + p.shift, n.has_slope, n.slope) * p.gamma;
        dxp[i] = p.rstd * (g - mg - (v - p.mean) * p.rstd * mgx);
    }
}

// One thread per channel: dγ = Σ over samples and chunks of Σ d·x̂, dβ = the same of Σ d;
// written after dx.
extern "C" __global__ void group_norm_affine_grad(const double *partial_d,
                                                  const double *partial_dxhat, float *out,
                                                  unsigned long long batch, unsigned long long c,
                                                  unsigned long long chunks) {
    GRID_STRIDE(ch, c) {
        double dg = 0.0, db = 0.0;
        for (unsigned long long s = 0; s < batch; ++s)
            for (unsigned long long k = 0; k < chunks; ++k) {
                dg += partial_dxhat[(s * c + ch) * chunks + k];
                db += partial_d[(s * c + ch) * chunks + k];
            }
        out[ch] = (float)dg;
        out[c + ch] = (float)db;
    }
}

// ---- Weight standardisation ------------------------------------------------------------------

// One block per output channel: mean and sqrt(unbiased var + eps) of its `fan` weights.
__device__ void row_moments(const float *row, unsigned long long fan, double eps, double &mean,
                            double &std) {
    double sum = 0.0, squares = 0.0;
    for (unsigned long long i = threadIdx.x; i < fan; i += blockDim.x) {
        double v = row[i];
        sum += v;
        squares += v * v;
    }
    block_sum2(sum, squares);
    double n = (double)fan;
    mean = sum / n;
    double var = fmax((squares - n * mean * mean) / (n - 1.0), 0.0);
    std = sqrt(var + eps);
}

extern "C" __global__ void standardize_weight(const float *w, float *out, unsigned long long fan,
                                              double eps) {
    const float *row = w + blockIdx.x * fan;
    double mean, std;
    row_moments(row, fan, eps, mean, std);
    float m = (float)mean, inv = (float)(1.0 / std);
    for (unsigned long long i = threadIdx.x; i < fan; i += blockDim.x)
        out[blockIdx.x * fan + i] = (row[i] - m) * inv;
}

// dw = (dy − mean(dy)) / s − (w − mean) · Σ(dy·(w − mean)) / ((n − 1)·s³).
extern "C" __global__ void standardize_weight_grad(const float *w, const float *dy, float *dw,
                                                   unsigned long long fan, double eps) {
    const float *row = w + blockIdx.x * fan;
    const float *grow = dy + blockIdx.x * fan;
    double mean, std;
    row_moments(row, fan, eps, mean, std);
    double dy_sum = 0.0, dy_w = 0.0;
    for (unsigned long long i = threadIdx.x; i < fan; i += blockDim.x) {
        double g = grow[i];
        dy_sum += g;
        dy_w += g * (double)row[i];
    }
    block_sum2(dy_sum, dy_w);
    double n = (double)fan;
    double dy_c = dy_w - mean * dy_sum;
    float dy_mean = (float)(dy_sum / n);
    float inv = (float)(1.0 / std);
    float c_factor = (float)(dy_c / ((n - 1.0) * std * std * std));
    float m = (float)mean;
    for (unsigned long long i = threadIdx.x; i < fan; i += blockDim.x)
        dw[blockIdx.x * fan + i] = (grow[i] - dy_mean) * inv - (row[i] - m) * c_factor;
}

// ---- Pooling ---------------------------------------------------------------------------------

struct Pool {
    unsigned long long in[3], out[3], kernel[3], stride[3], padding[3];
};

// The window of output `o` (within one plane) along each axis, clipped to the input.
__device__ void pool_window(const Pool &p, unsigned long long o, unsigned long long lo[3],
                            unsigned long long hi[3]) {
    unsigned long long idx[3];
    idx[2] = o % p.out[2];
    idx[1] = (o / p.out[2]) % p.out[1];
    idx[0] = o / (p.out[2] * p.out[1]);
    for (int a = 0; a < 3; ++a) {
        unsigned long long start = idx[a] * p.stride[a];
        unsigned long long end = start + p.kernel[a];
        lo[a] = start > p.padding[a] ? start - p.padding[a] : 0;
        hi[a] = end > p.padding[a] ? end - p.padding[a] : 0;
        if (hi[a] > p.in[a]) hi[a] = p.in[a];
    }
}

// The first maximum in scan order (a NaN wins), or -1 for an empty window.
__device__ long long pool_argmax(const Pool &p, const float *plane, const unsigned long long lo[3],
                                 const unsigned long long hi[3]) {
    long long best = -1;
    float best_v = 0.0f;
    for (unsigned long long z = lo[0]; z < hi[0]; ++z)
        for (unsigned long long y = lo[1]; y < hi[1]; ++y)
            for (unsigned long long x = lo[2]; x < hi[2]; ++x) {
                long long i = (long long)((z * p.in[1] + y) * p.in[2] + x);
                float v = plane[i];
                if (best < 0 || v > best_v || isnan(v)) {
                    best = i;
                    best_v = v;
                }
            }
    return best;
}

extern "C" __global__ void max_pool3d(const float *x, float *y, unsigned long long planes,
                                      Pool p) {
    unsigned long long in_vol = p.in[0] * p.in[1] * p.in[2];
    unsigned long long out_vol = p.out[0] * p.out[1] * p.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, o = i % out_vol, lo[3], hi[3];
        pool_window(p, o, lo, hi);
        const float *xp = x + plane * in_vol;
        long long best = pool_argmax(p, xp, lo, hi);
        y[i] = best < 0 ? -INFINITY : xp[best];
    }
}

// dx (zeroed) += dy at each window's first maximum.
extern "C" __global__ void max_pool3d_grad(const float *x, const float *dy, float *dx,
                                           unsigned long long planes, Pool p) {
    unsigned long long in_vol = p.in[0] * p.in[1] * p.in[2];
    unsigned long long out_vol = p.out[0] * p.out[1] * p.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, o = i % out_vol, lo[3], hi[3];
        pool_window(p, o, lo, hi);
        long long best = pool_argmax(p, x + plane * in_vol, lo, hi);
        if (best >= 0) atomicAdd(dx + plane * in_vol + best, dy[i]);
    }
}

// Average over the window, divided by the kernel's volume (padding counts).
extern "C" __global__ void avg_pool3d(const float *x, float *y, unsigned long long planes, Pool p,
                                      float scale) {
    unsigned long long in_vol = p.in[0] * p.in[1] * p.in[2];
    unsigned long long out_vol = p.out[0] * p.out[1] * p.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, o = i % out_vol, lo[3], hi[3];
        pool_window(p, o, lo, hi);
        const float *xp = x + plane * in_vol;
        float sum = 0.0f;
        for (unsigned long long z = lo[0]; z < hi[0]; ++z)
            for (unsigned long long yy = lo[1]; yy < hi[1]; ++yy)
                for (unsigned long long xx = lo[2]; xx < hi[2]; ++xx)
                    sum += xp[(z * p.in[1] + yy) * p.in[2] + xx];
        y[i] = sum * scale;
    }
}

// The adjoint: dx (zeroed) += dy · scale over each window.
extern "C" __global__ void avg_pool3d_adjoint(const float *dy, float *dx, unsigned long long planes,
                                              Pool p, float scale) {
    unsigned long long in_vol = p.in[0] * p.in[1] * p.in[2];
    unsigned long long out_vol = p.out[0] * p.out[1] * p.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, o = i % out_vol, lo[3], hi[3];
        pool_window(p, o, lo, hi);
        float v = dy[i] * scale;
        float *dp = dx + plane * in_vol;
        for (unsigned long long z = lo[0]; z < hi[0]; ++z)
            for (unsigned long long yy = lo[1]; yy < hi[1]; ++yy)
                for (unsigned long long xx = lo[2]; xx < hi[2]; ++xx)
                    atomicAdd(dp + (z * p.in[1] + yy) * p.in[2] + xx, v);
    }
}

// ---- Resampling ------------------------------------------------------------------------------

// Taps: for each axis a and output index o along it, two input indices and two weights, stored
// axis after axis (offsets 0, out[0], out[0] + out[1]).
struct Extents {
    unsigned long long in[3], out[3];
};

__device__ void resample_taps(const Extents &e, unsigned long long o, const unsigned int *index,
                              const float *weight, unsigned long long ti[3][2], float tw[3][2]) {
    unsigned long long idx[3];
    idx[2] = o % e.out[2];
    idx[1] = (o / e.out[2]) % e.out[1];
    idx[0] = o / (e.out[2] * e.out[1]);
    unsigned long long offset = 0;
    for (int a = 0; a < 3; ++a) {
        unsigned long long t = offset + idx[a];
        ti[a][0] = index[2 * t];
        ti[a][1] = index[2 * t + 1];
        tw[a][0] = weight[2 * t];
        tw[a][1] = weight[2 * t + 1];
        offset += e.out[a];
    }
}

extern "C" __global__ void resample3d(const float *x, float *y, unsigned long long planes,
                                      Extents e, const unsigned int *index, const float *weight) {
    unsigned long long in_vol = e.in[0] * e.in[1] * e.in[2];
    unsigned long long out_vol = e.out[0] * e.out[1] * e.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, ti[3][2];
        float tw[3][2];
        resample_taps(e, i % out_vol, index, weight, ti, tw);
        const float *xp = x + plane * in_vol;
        float sum = 0.0f;
        for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b)
                for (int c = 0; c < 2; ++c) {
                    float w = tw[0][a] * tw[1][b] * tw[2][c];
                    if (w != 0.0f)
                        sum += w * xp[(ti[0][a] * e.in[1] + ti[1][b]) * e.in[2] + ti[2][c]];
                }
        y[i] = sum;
    }
}

// The adjoint: dx (zeroed) += the taps' weights · dy.
extern "C" __global__ void resample3d_adjoint(const float *dy, float *dx, unsigned long long planes,
                                              Extents e, const unsigned int *index,
                                              const float *weight) {
    unsigned long long in_vol = e.in[0] * e.in[1] * e.in[2];
    unsigned long long out_vol = e.out[0] * e.out[1] * e.out[2];
    GRID_STRIDE(i, planes * out_vol) {
        unsigned long long plane = i / out_vol, ti[3][2];
        float tw[3][2];
        resample_taps(e, i % out_vol, index, weight, ti, tw);
        float *dp = dx + plane * in_vol;
        float g = dy[i];
        for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b)
                for (int c = 0; c < 2; ++c) {
                    float w = tw[0][a] * tw[1][b] * tw[2][c];
                    if (w != 0.0f)
                        atomicAdd(dp + (ti[0][a] * e.in[1] + ti[1][b]) * e.in[2] + ti[2][c], w * g);
                }
    }
}
