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
