// norm.cu: GroupNorm (+ fused SiLU), LayerNorm, softmax, forward and
// backward. Statistics in float; mean and rstd saved as float.

// GroupNorm forward: one block per (n, g). The group's elements are the
// contiguous run x[(n*C + g*cpg)*hw ...] of cpg*hw elements.
template <class T>
__device__ void groupnorm_k(T* y, float* mean_out, float* rstd_out, const T* x, const T* gamma, const T* beta,
                            long long C, long long hw, long long G, float eps, int silu) {
    __shared__ float sh[32];
    const long long ng = blockIdx.x, n = ng / G, g = ng - n * G, cpg = C / G;
    const long long cnt = cpg * hw, base = (n * C + g * cpg) * hw;
    float s = 0.f;
    for (long long e = threadIdx.x; e < cnt; e += blockDim.x) s += tof(x[base + e]);
    const float mean = block_sum(s, sh) / (float)cnt;
    float s2 = 0.f;
    for (long long e = threadIdx.x; e < cnt; e += blockDim.x) {
        const float d = tof(x[base + e]) - mean;
        s2 += d * d;
    }
    const float rstd = rsqrtf(block_sum(s2, sh) / (float)cnt + eps);
    if (threadIdx.x == 0) {
        mean_out[ng] = mean;
        rstd_out[ng] = rstd;
    }
    for (long long e = threadIdx.x; e < cnt; e += blockDim.x) {
        const long long c = g * cpg + e / hw;
        float z = (tof(x[base + e]) - mean) * rstd * opt(gamma, c, 1.f) + opt(beta, c, 0.f);
        if (silu) z = z * sigmoidf_(z);
        y[base + e] = fromf<T>(z);
    }
}
#define K_GN(S, T)                                                                                              \
    extern "C" __global__ void groupnorm_##S(T* y, float* mean, float* rstd, const T* x, const T* gamma,          \
                                             const T* beta, long long C, long long hw, long long G, float eps, \
                                             int silu) {                                                        \
        groupnorm_k<T>(y, mean, rstd, x, gamma, beta, C, hw, G, eps, silu);                                     \
    }
FOR_EACH_DTYPE(K_GN)

// dz: gradient at the normalised-and-affine output z (before the SiLU).
template <class T>
__device__ __forceinline__ float gn_dz(float dy, float xhat, long long c, const T* gamma, const T* beta, int silu) {
    if (!silu) return dy;
    const float z = xhat * opt(gamma, c, 1.f) + opt(beta, c, 0.f);
    const float s = sigmoidf_(z);
    return dy * s * (1.f + z * (1.f - s));
}

// GroupNorm backward, dx part: one block per (n, g).
// dxhat = dz*gamma; dx += rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)).
// dxhat is rounded with __fmul_rn so that the compiler cannot fuse it into
// the subtraction below (an FMA would keep the product's rounding residual,
// which rstd amplifies when a group has one element and dx must be 0).
template <class T>
__device__ void groupnorm_bwd_dx_k(T* dx, const T* dy, const T* x, const float* mean, const float* rstd,
                                   const T* gamma, const T* beta, long long C, long long hw, long long G, int silu) {
    __shared__ float sh[32];
    const long long ng = blockIdx.x, n = ng / G, g = ng - n * G, cpg = C / G;
    const long long cnt = cpg * hw, base = (n * C + g * cpg) * hw;
    const float mu = mean[ng], rs = rstd[ng];
    float s1 = 0.f, s2 = 0.f;
    for (long long e = threadIdx.x; e < cnt; e += blockDim.x) {
        const long long c = g * cpg + e / hw;
        const float xhat = (tof(x[base + e]) - mu) * rs;
        const float dxhat = __fmul_rn(gn_dz(tof(dy[base + e]), xhat, c, gamma, beta, silu), opt(gamma, c, 1.f));
        s1 += dxhat;
        s2 += dxhat * xhat;
    }
    s1 = block_sum(s1, sh) / (float)cnt;
    s2 = block_sum(s2, sh) / (float)cnt;
    for (long long e = threadIdx.x; e < cnt; e += blockDim.x) {
        const long long c = g * cpg + e / hw;
        const float xhat = (tof(x[base + e]) - mu) * rs;
        const float dxhat = __fmul_rn(gn_dz(tof(dy[base + e]), xhat, c, gamma, beta, silu), opt(gamma, c, 1.f));
        dx[base + e] = fromf<T>(tof(dx[base + e]) + rs * (dxhat - s1 - xhat * s2));
    }
}
#define K_GN_BWD_DX(S, T)                                                                                           \
    extern "C" __global__ void groupnorm_bwd_dx_##S(T* dx, const T* dy, const T* x, const float* mean,               \
                                                    const float* rstd, const T* gamma, const T* beta, long long C, \
                                                    long long hw, long long G, int silu) {                          \
        groupnorm_bwd_dx_k<T>(dx, dy, x, mean, rstd, gamma, beta, C, hw, G, silu);                                  \
    }
FOR_EACH_DTYPE(K_GN_BWD_DX)

// GroupNorm backward, parameter part: one block per channel c.
// dgamma[c] += sum dz*xhat, dbeta[c] += sum dz over n and hw.
template <class T>
__device__ void groupnorm_bwd_param_k(T* dgamma, T* dbeta, const T* dy, const T* x, const float* mean,
                                      const float* rstd, const T* gamma, const T* beta, long long N, long long C,
                                      long long hw, long long G, int silu) {
    __shared__ float sh[32];
    const long long c = blockIdx.x, g = c / (C / G);
    float sg = 0.f, sb = 0.f;
    for (long long e = threadIdx.x; e < N * hw; e += blockDim.x) {
        const long long n = e / hw, t = e - n * hw, i = (n * C + c) * hw + t;
        const float xhat = (tof(x[i]) - mean[n * G + g]) * rstd[n * G + g];
        const float dz = gn_dz(tof(dy[i]), xhat, c, gamma, beta, silu);
        sg += dz * xhat;
        sb += dz;
    }
    sg = block_sum(sg, sh);
    sb = block_sum(sb, sh);
    if (threadIdx.x == 0) {
        if (dgamma) dgamma[c] = fromf<T>(tof(dgamma[c]) + sg);
        if (dbeta) dbeta[c] = fromf<T>(tof(dbeta[c]) + sb);
    }
}
#define K_GN_BWD_P(S, T)                                                                                           \
    extern "C" __global__ void groupnorm_bwd_param_##S(T* dgamma, T* dbeta, const T* dy, const T* x,                \
                                                       const float* mean, const float* rstd, const T* gamma,         \
                                                       const T* beta, long long N, long long C, long long hw,        \
                                                       long long G, int silu) {                                     \
        groupnorm_bwd_param_k<T>(dgamma, dbeta, dy, x, mean, rstd, gamma, beta, N, C, hw, G, silu);                 \
    }
FOR_EACH_DTYPE(K_GN_BWD_P)

// ---- GroupNorm, split-group kernels ----------------------------------------
//
// Why these exist: the kernels above run one block per (n, g). Stable
// Diffusion has 32 groups, so at batch 3 that is 96 blocks on a 132-SM
// H100/H200, each making 2-3 passes over up to 20*64*64 = 80k elements:
// the kernels are bound by occupancy, not memory bandwidth (measured on an
// H200: 58 us forward, 119 us backward per call for ~6 us of traffic).
// The split kernels give each group several blocks and combine the blocks'
// partial statistics through a small F32 workspace, one kernel launch later.
// ops_norm.go picks them for groups large enough to split (and falls back
// to the kernels above with LOCO_CUDA_GROUPNORM=simple).
//
// Chunks (forward, backward dx): the cnt = cpg*hw elements of group ng are
// cut into S chunks of `chunk` consecutive elements, the last one shorter
// but never empty (the Go side picks chunk and S so). Block b of a 1-D grid
// of N*G*S blocks takes chunk s = b % S of group ng = b / S. Offsets inside
// a group fit in 31 bits (the Go side checks), so the channel of an element
// is found with a 32-bit division.
//
// Forward statistics: each chunk's mean m_j and sum of squared deviations
// M2_j (two passes over the chunk, the second from cache); the group mean
// is sum_j n_j*m_j / cnt and its M2 is sum_j M2_j + n_j*(m_j - mean)^2
// (Chan et al.'s pairwise combination, summed in one step): no E[x^2] -
// E[x]^2 cancellation.
//
// Backward: one warp per (n, c, piece of hw) sums dz*xhat and dz (the
// channel's dgamma and dbeta contributions); because dxhat = dz*gamma_c,
// the group sums the dx formula needs are sum_c gamma_c * those channel
// sums, so one partial kernel feeds both the dx pass and the parameter
// gradients. dz is computed with explicitly rounded operations
// (gn_dz_rn) so that the partial kernel and the dx kernel get bit-identical
// values: a group of one element then gets dx += exactly 0, as it must
// (see groupnorm_bwd_dx_k on __fmul_rn).

// chunk length of chunk s (of `chunk` elements) in a group of cnt.
__device__ __forceinline__ long long gn_chunk_len(long long s, long long chunk, long long cnt) {
    const long long rest = cnt - s * chunk;
    return rest < chunk ? rest : chunk;
}

// Forward pass 1: per-chunk mean and M2 into part[2*b], part[2*b+1].
template <class T>
__device__ void gn_split_stats_k(float* part, const T* x, long long C, long long hw, long long G, long long chunk,
                                 long long S) {
    __shared__ float sh[32];
    const long long b = blockIdx.x, ng = b / S, s = b - ng * S, n = ng / G, g = ng - n * G, cpg = C / G;
    const int m = (int)gn_chunk_len(s, chunk, cpg * hw);
    const T* xs = x + (n * C + g * cpg) * hw + s * chunk;
    float sum = 0.f;
    for (int e = threadIdx.x; e < m; e += blockDim.x) sum += tof(xs[e]);
    const float mu = block_sum(sum, sh) / (float)m;
    float q = 0.f;
    for (int e = threadIdx.x; e < m; e += blockDim.x) {
        const float d = tof(xs[e]) - mu;
        q += d * d;
    }
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        part[2 * b] = mu;
        part[2 * b + 1] = q;
    }
}
#define K_GN_SPLIT_STATS(S_, T)                                                                                   \
    extern "C" __global__ void groupnorm_split_stats_##S_(float* part, const T* x, long long C, long long hw,    \
                                                          long long G, long long chunk, long long S) {          \
        gn_split_stats_k<T>(part, x, C, hw, G, chunk, S);                                                         \
    }
FOR_EACH_DTYPE(K_GN_SPLIT_STATS)

// Forward pass 2: every block merges its group's S partials (S is small),
// block s = 0 saves mean and rstd, and each block normalises its chunk.
template <class T>
__device__ void gn_split_apply_k(T* y, float* mean_out, float* rstd_out, const float* part, const T* x,
                                 const T* gamma, const T* beta, long long C, long long hw, long long G,
                                 long long chunk, long long S, float eps, int silu) {
    __shared__ float sh[32];
    const long long b = blockIdx.x, ng = b / S, s = b - ng * S, n = ng / G, g = ng - n * G, cpg = C / G;
    const long long cnt = cpg * hw;
    const float* pp = part + 2 * ng * S;
    float a = 0.f;
    for (long long j = threadIdx.x; j < S; j += blockDim.x) a += (float)gn_chunk_len(j, chunk, cnt) * pp[2 * j];
    const float mean = block_sum(a, sh) / (float)cnt;
    float q = 0.f;
    for (long long j = threadIdx.x; j < S; j += blockDim.x) {
        const float d = pp[2 * j] - mean;
        q += pp[2 * j + 1] + (float)gn_chunk_len(j, chunk, cnt) * d * d;
    }
    const float rstd = rsqrtf(block_sum(q, sh) / (float)cnt + eps);
    if (s == 0 && threadIdx.x == 0) {
        mean_out[ng] = mean;
        rstd_out[ng] = rstd;
    }
    const unsigned e0 = (unsigned)(s * chunk), m = (unsigned)gn_chunk_len(s, chunk, cnt), uhw = (unsigned)hw;
    const long long base = (n * C + g * cpg) * hw + e0, c0 = g * cpg;
    for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
        const long long c = c0 + (e0 + e) / uhw;
        float z = (tof(x[base + e]) - mean) * rstd * opt(gamma, c, 1.f) + opt(beta, c, 0.f);
        if (silu) z = z * sigmoidf_(z);
        y[base + e] = fromf<T>(z);
    }
}
#define K_GN_SPLIT_APPLY(S_, T)                                                                                   \
    extern "C" __global__ void groupnorm_split_apply_##S_(T* y, float* mean, float* rstd, const float* part,     \
                                                          const T* x, const T* gamma, const T* beta, long long C, \
                                                          long long hw, long long G, long long chunk, long long S, \
                                                          float eps, int silu) {                                  \
        gn_split_apply_k<T>(y, mean, rstd, part, x, gamma, beta, C, hw, G, chunk, S, eps, silu);                  \
    }
FOR_EACH_DTYPE(K_GN_SPLIT_APPLY)

// dz (gradient at z = xhat*gamma + beta, before the SiLU) with every
// rounding explicit, so that each kernel computing it gets the same bits.
__device__ __forceinline__ float gn_dz_rn(float dy, float xhat, float gm, float bt, int silu) {
    if (!silu) return dy;
    const float z = __fmaf_rn(xhat, gm, bt);
    const float s = sigmoidf_(z);
    return __fmul_rn(__fmul_rn(dy, s), __fmaf_rn(z, __fsub_rn(1.f, s), 1.f));
}

// Backward pass 1: warp w = (n*C + c)*P + p sums over elements [p*piece,
// min((p+1)*piece, hw)) of channel (n, c): pg[w] = sum dz*xhat, pb[w] = sum dz.
// Blocks are 256 threads (8 warps); rows = N*C*P.
template <class T>
__device__ void gn_split_bwd_part_k(float* pg, float* pb, const T* dy, const T* x, const float* mean,
                                    const float* rstd, const T* gamma, const T* beta, long long C, long long hw,
                                    long long G, long long piece, long long P, long long rows, int silu) {
    const long long w = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (w >= rows) return; // the whole warp: no block-wide synchronisation below
    const long long nc = w / P, p = w - nc * P, n = nc / C, c = nc - n * C, ng = n * G + c / (C / G);
    const int m = (int)gn_chunk_len(p, piece, hw);
    const long long base = nc * hw + p * piece;
    const float mu = mean[ng], rs = rstd[ng], gm = opt(gamma, c, 1.f), bt = opt(beta, c, 0.f);
    float sg = 0.f, sb = 0.f;
    for (int t = lane; t < m; t += 32) {
        const float xhat = (tof(x[base + t]) - mu) * rs;
        const float dz = gn_dz_rn(tof(dy[base + t]), xhat, gm, bt, silu);
        sg += dz * xhat;
        sb += dz;
    }
    sg = warp_sum(sg);
    sb = warp_sum(sb);
    if (lane == 0) {
        pg[w] = sg;
        pb[w] = sb;
    }
}
#define K_GN_SPLIT_BWD_PART(S_, T)                                                                                 \
    extern "C" __global__ void groupnorm_split_bwd_part_##S_(                                                      \
        float* pg, float* pb, const T* dy, const T* x, const float* mean, const float* rstd, const T* gamma,        \
        const T* beta, long long C, long long hw, long long G, long long piece, long long P, long long rows,        \
        int silu) {                                                                                                 \
        gn_split_bwd_part_k<T>(pg, pb, dy, x, mean, rstd, gamma, beta, C, hw, G, piece, P, rows, silu);            \
    }
FOR_EACH_DTYPE(K_GN_SPLIT_BWD_PART)

// Backward pass 2. With dx: a grid of N*G*S blocks over the chunks, each
// block forming its group's sums from the cpg*P partials of its channels,
// dx += rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)). Then, with
// dgamma or dbeta, the threads of the whole grid (any size) stride over
// the channels: dgamma[c] += sum over n, p of pg, dbeta[c] += of pb.
template <class T>
__device__ void gn_split_bwd_k(T* dx, T* dgamma, T* dbeta, const float* pg, const float* pb, const T* dy,
                               const T* x, const float* mean, const float* rstd, const T* gamma, const T* beta,
                               long long N, long long C, long long hw, long long G, long long chunk, long long S,
                               long long P, int silu) {
    __shared__ float sh[32];
    const long long cpg = C / G;
    if (dx) {
        const long long b = blockIdx.x, ng = b / S, s = b - ng * S, n = ng / G, g = ng - n * G, c0 = g * cpg;
        const long long cnt = cpg * hw, r0 = (n * C + c0) * P; // the group's partial rows: cpg*P from r0
        float a1 = 0.f, a2 = 0.f;
        for (long long j = threadIdx.x; j < cpg * P; j += blockDim.x) {
            const float gm = opt(gamma, c0 + j / P, 1.f);
            a1 += __fmul_rn(gm, pb[r0 + j]);
            a2 += __fmul_rn(gm, pg[r0 + j]);
        }
        const float s1 = block_sum(a1, sh) / (float)cnt;
        const float s2 = block_sum(a2, sh) / (float)cnt;
        const float mu = mean[ng], rs = rstd[ng];
        const unsigned e0 = (unsigned)(s * chunk), m = (unsigned)gn_chunk_len(s, chunk, cnt), uhw = (unsigned)hw;
        const long long base = (n * C + c0) * hw + e0;
        for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
            const long long c = c0 + (e0 + e) / uhw;
            const float gm = opt(gamma, c, 1.f);
            const float xhat = (tof(x[base + e]) - mu) * rs;
            const float dxhat = __fmul_rn(gn_dz_rn(tof(dy[base + e]), xhat, gm, opt(beta, c, 0.f), silu), gm);
            dx[base + e] = fromf<T>(tof(dx[base + e]) + rs * (dxhat - s1 - xhat * s2));
        }
    }
    if (dgamma || dbeta) {
        const long long stride = (long long)gridDim.x * blockDim.x;
        for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < C; c += stride) {
            float sg = 0.f, sb = 0.f;
            for (long long n = 0; n < N; ++n) {
                const long long r = (n * C + c) * P;
                for (long long p = 0; p < P; ++p) {
                    sg += pg[r + p];
                    sb += pb[r + p];
                }
            }
            if (dgamma) dgamma[c] = fromf<T>(tof(dgamma[c]) + sg);
            if (dbeta) dbeta[c] = fromf<T>(tof(dbeta[c]) + sb);
        }
    }
}
#define K_GN_SPLIT_BWD(S_, T)                                                                                     \
    extern "C" __global__ void groupnorm_split_bwd_##S_(                                                          \
        T* dx, T* dgamma, T* dbeta, const float* pg, const float* pb, const T* dy, const T* x, const float* mean, \
        const float* rstd, const T* gamma, const T* beta, long long N, long long C, long long hw, long long G,     \
        long long chunk, long long S, long long P, int silu) {                                                    \
        gn_split_bwd_k<T>(dx, dgamma, dbeta, pg, pb, dy, x, mean, rstd, gamma, beta, N, C, hw, G, chunk, S, P,   \
                          silu);                                                                                  \
    }
FOR_EACH_DTYPE(K_GN_SPLIT_BWD)

// LayerNorm forward: one block per row of x[rows, cols].
template <class T>
__device__ void layernorm_k(T* y, float* mean_out, float* rstd_out, const T* x, const T* gamma, const T* beta,
                            long long cols, float eps) {
    __shared__ float sh[32];
    const long long r = blockIdx.x, base = r * cols;
    float s = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += tof(x[base + c]);
    const float mean = block_sum(s, sh) / (float)cols;
    float s2 = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = tof(x[base + c]) - mean;
        s2 += d * d;
    }
    const float rstd = rsqrtf(block_sum(s2, sh) / (float)cols + eps);
    if (threadIdx.x == 0) {
        mean_out[r] = mean;
        rstd_out[r] = rstd;
    }
    for (long long c = threadIdx.x; c < cols; c += blockDim.x)
        y[base + c] = fromf<T>((tof(x[base + c]) - mean) * rstd * opt(gamma, c, 1.f) + opt(beta, c, 0.f));
}
#define K_LN(S, T)                                                                                                  \
    extern "C" __global__ void layernorm_##S(T* y, float* mean, float* rstd, const T* x, const T* gamma,              \
                                             const T* beta, long long cols, float eps) {                            \
        layernorm_k<T>(y, mean, rstd, x, gamma, beta, cols, eps);                                                   \
    }
FOR_EACH_DTYPE(K_LN)

// LayerNorm backward, dx part: one block per row.
template <class T>
__device__ void layernorm_bwd_dx_k(T* dx, const T* dy, const T* x, const float* mean, const float* rstd,
                                   const T* gamma, long long cols) {
    __shared__ float sh[32];
    const long long r = blockIdx.x, base = r * cols;
    const float mu = mean[r], rs = rstd[r];
    float s1 = 0.f, s2 = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        const float xhat = (tof(x[base + c]) - mu) * rs;
        const float dxhat = __fmul_rn(tof(dy[base + c]), opt(gamma, c, 1.f));
        s1 += dxhat;
        s2 += dxhat * xhat;
    }
    s1 = block_sum(s1, sh) / (float)cols;
    s2 = block_sum(s2, sh) / (float)cols;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        const float xhat = (tof(x[base + c]) - mu) * rs;
        const float dxhat = __fmul_rn(tof(dy[base + c]), opt(gamma, c, 1.f));
        dx[base + c] = fromf<T>(tof(dx[base + c]) + rs * (dxhat - s1 - xhat * s2));
    }
}
#define K_LN_BWD_DX(S, T)                                                                                        \
    extern "C" __global__ void layernorm_bwd_dx_##S(T* dx, const T* dy, const T* x, const float* mean,            \
                                                    const float* rstd, const T* gamma, long long cols) {         \
        layernorm_bwd_dx_k<T>(dx, dy, x, mean, rstd, gamma, cols);                                               \
    }
FOR_EACH_DTYPE(K_LN_BWD_DX)

// LayerNorm backward, parameters: block (32, 8) per 32 columns, the 8
// thread rows stride over the rows of x.
template <class T>
__device__ void layernorm_bwd_param_k(T* dgamma, T* dbeta, const T* dy, const T* x, const float* mean,
                                      const float* rstd, long long rows, long long cols) {
    __shared__ float shg[8][33], shb[8][33];
    const long long c = (long long)blockIdx.x * 32 + threadIdx.x;
    float sg = 0.f, sb = 0.f;
    if (c < cols) {
        for (long long r = threadIdx.y; r < rows; r += 8) {
            const float d = tof(dy[r * cols + c]);
            sg += d * (tof(x[r * cols + c]) - mean[r]) * rstd[r];
            sb += d;
        }
    }
    shg[threadIdx.y][threadIdx.x] = sg;
    shb[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float tg = 0.f, tb = 0.f;
        for (int k = 0; k < 8; ++k) {
            tg += shg[k][threadIdx.x];
            tb += shb[k][threadIdx.x];
        }
        if (dgamma) dgamma[c] = fromf<T>(tof(dgamma[c]) + tg);
        if (dbeta) dbeta[c] = fromf<T>(tof(dbeta[c]) + tb);
    }
}
#define K_LN_BWD_P(S, T)                                                                                           \
    extern "C" __global__ void layernorm_bwd_param_##S(T* dgamma, T* dbeta, const T* dy, const T* x,                \
                                                       const float* mean, const float* rstd, long long rows,         \
                                                       long long cols) {                                            \
        layernorm_bwd_param_k<T>(dgamma, dbeta, dy, x, mean, rstd, rows, cols);                                     \
    }
FOR_EACH_DTYPE(K_LN_BWD_P)

// Softmax over the last dim: one block per row.
template <class T> __device__ void softmax_k(T* y, const T* x, long long cols) {
    __shared__ float sh[32];
    const long long base = (long long)blockIdx.x * cols;
    float m = -INFINITY;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, tof(x[base + c]));
    // block max through the sum helper's shared memory: reduce -(-m) with max
    m = warp_max(m);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float t = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : -INFINITY;
        t = warp_max(t);
        if (threadIdx.x == 0) sh[0] = t;
    }
    __syncthreads();
    m = sh[0];
    float s = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += expf(tof(x[base + c]) - m);
    s = block_sum(s, sh);
    const float inv = 1.f / s;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) y[base + c] = fromf<T>(expf(tof(x[base + c]) - m) * inv);
}
#define K_SOFTMAX(S, T) \
    extern "C" __global__ void softmax_##S(T* y, const T* x, long long cols) { softmax_k<T>(y, x, cols); }
FOR_EACH_DTYPE(K_SOFTMAX)

// dx += y * (dy - sum(dy*y)); one block per row.
template <class T> __device__ void softmax_bwd_k(T* dx, const T* dy, const T* y, long long cols) {
    __shared__ float sh[32];
    const long long base = (long long)blockIdx.x * cols;
    float s = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += tof(dy[base + c]) * tof(y[base + c]);
    s = block_sum(s, sh);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        const float yv = tof(y[base + c]);
        dx[base + c] = fromf<T>(tof(dx[base + c]) + yv * (tof(dy[base + c]) - s));
    }
}
#define K_SOFTMAX_BWD(S, T)                                                                         \
    extern "C" __global__ void softmax_bwd_##S(T* dx, const T* dy, const T* y, long long cols) { \
        softmax_bwd_k<T>(dx, dy, y, cols);                                                          \
    }
FOR_EACH_DTYPE(K_SOFTMAX_BWD)
