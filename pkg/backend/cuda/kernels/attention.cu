// attention.cu: fused scaled-dot-product attention (online softmax), forward
// and backward, on q[B,Tq,H,D], k,v[B,Tk,H,D]; lse and delta are [B,H,Tq].
//
// A block is ATT_WARPS warps; each warp owns ATT_RPW rows (query rows in the
// forward and dq kernels, key rows in the dk/dv kernel). The other side is
// streamed through shared memory in tiles of 32, one element per lane, so
// each lane computes one score with a full dot product from shared memory.
// Each lane keeps output dimensions d = lane + 32*i (i < ATT_MAXND) in
// registers, so D <= 256. No score matrix is ever stored.

#define ATT_WARPS 4
#define ATT_RPW 2
#define ATT_ROWS (ATT_WARPS * ATT_RPW)
#define ATT_KT 32
#define ATT_MAXND 8

__device__ __forceinline__ long long att_row(long long b, long long t, long long h, long long T, long long H, int D) {
    return ((b * T + t) * H + h) * D;
}

// Forward. Grid (ceil(Tq/ATT_ROWS), B*H), block 32*ATT_WARPS.
// Shared: Qs[ROWS][D], Ks[KT][D+1], Vs[KT][D].
template <class T>
__device__ void attn_fwd_k(T* o, float* lse, const T* q, const T* k, const T* v, long long H, long long Tq,
                           long long Tk, int D, float scale, int causal) {
    extern __shared__ float smem[];
    const int DP = D + 1;
    float* Qs = smem;
    float* Ks = Qs + ATT_ROWS * D;
    float* Vs = Ks + ATT_KT * DP;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long q0 = (long long)blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nd = (D + 31) / 32;
    for (int e = threadIdx.x; e < ATT_ROWS * D; e += blockDim.x) {
        const int r = e / D, d = e - r * D;
        const long long qi = q0 + r;
        Qs[e] = qi < Tq ? tof(q[att_row(b, qi, h, Tq, H, D) + d]) : 0.f;
    }
    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][ATT_MAXND];
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr) {
        m[rr] = -INFINITY;
        l[rr] = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) acc[rr][i] = 0.f;
    }
    long long kend = Tk;
    if (causal && q0 + ATT_ROWS < kend) kend = q0 + ATT_ROWS;
    for (long long k0 = 0; k0 < kend; k0 += ATT_KT) {
        __syncthreads(); // Qs written; previous tile no longer read
        for (int e = threadIdx.x; e < ATT_KT * D; e += blockDim.x) {
            const int j = e / D, d = e - j * D;
            const long long kj = k0 + j;
            float kv = 0.f, vv = 0.f;
            if (kj < Tk) {
                const long long off = att_row(b, kj, h, Tk, H, D) + d;
                kv = tof(k[off]);
                vv = tof(v[off]);
            }
            Ks[j * DP + d] = kv;
            Vs[j * D + d] = vv;
        }
        __syncthreads();
        const int nk = (int)(Tk - k0 < ATT_KT ? Tk - k0 : ATT_KT);
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; ++rr) {
            const int r = warp * ATT_RPW + rr;
            const long long qi = q0 + r;
            if (qi >= Tq) continue; // uniform over the warp
            const float* qr = Qs + r * D;
            const float* kr = Ks + lane * DP;
            float s = 0.f;
            for (int d = 0; d < D; ++d) s += qr[d] * kr[d];
            s *= scale;
            const bool valid = lane < nk && (!causal || k0 + lane <= qi);
            if (!valid) s = -INFINITY;
            const float mnew = fmaxf(m[rr], warp_max(s));
            if (mnew == -INFINITY) continue; // nothing visible yet; uniform
            const float p = valid ? expf(s - mnew) : 0.f;
            const float alpha = expf(m[rr] - mnew);
            l[rr] = l[rr] * alpha + warp_sum(p);
#pragma unroll
            for (int i = 0; i < ATT_MAXND; ++i) acc[rr][i] *= alpha;
            for (int j = 0; j < nk; ++j) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                const float* vr = Vs + j * D;
#pragma unroll
                for (int i = 0; i < ATT_MAXND; ++i) {
                    const int d = lane + 32 * i;
                    if (i < nd && d < D) acc[rr][i] += pj * vr[d];
                }
            }
            m[rr] = mnew;
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr) {
        const long long qi = q0 + warp * ATT_RPW + rr;
        if (qi >= Tq) continue;
        const float inv = l[rr] > 0.f ? 1.f / l[rr] : 0.f;
        const long long base = att_row(b, qi, h, Tq, H, D);
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) {
            const int d = lane + 32 * i;
            if (i < nd && d < D) o[base + d] = fromf<T>(acc[rr][i] * inv);
        }
        if (lane == 0) lse[bh * Tq + qi] = m[rr] + logf(l[rr]);
    }
}
#define K_ATT_FWD(S, T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * ATT_WARPS)                                                \
        attn_fwd_##S(T* o, float* lse, const T* q, const T* k, const T* v, long long H, long long Tq, long long Tk, \
                     int D, float scale, int causal) {                                                          \
        attn_fwd_k<T>(o, lse, q, k, v, H, Tq, Tk, D, scale, causal);                                            \
    }
FOR_EACH_DTYPE(K_ATT_FWD)

// delta[b,h,i] = sum_d dO[b,i,h,d] * O[b,i,h,d]; one warp per (b, i, h) row,
// rows numbered in memory order.
template <class T>
__device__ void attn_delta_k(float* delta, const T* dout, const T* o, long long rows, long long H, long long Tq, int D) {
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return; // uniform over the warp
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += tof(dout[row * D + d]) * tof(o[row * D + d]);
    s = warp_sum(s);
    const long long h = row % H, t = row / H, qi = t % Tq, b = t / Tq;
    if (lane == 0) delta[(b * H + h) * Tq + qi] = s;
}
#define K_ATT_DELTA(S, T)                                                                                    \
    extern "C" __global__ void attn_delta_##S(float* delta, const T* dout, const T* o, long long rows,        \
                                              long long H, long long Tq, int D) {                            \
        attn_delta_k<T>(delta, dout, o, rows, H, Tq, D);                                                     \
    }
FOR_EACH_DTYPE(K_ATT_DELTA)

// dq += scale * sum_j dS_ij K_j with P_ij = exp(s_ij - lse_i),
// dS_ij = P_ij (dO_i.V_j - delta_i). Grid and rows as the forward.
// Shared: Qs[ROWS][D], dOs[ROWS][D], Ks[KT][D+1], Vs[KT][D+1].
template <class T>
__device__ void attn_bwd_dq_k(T* dq, const T* q, const T* k, const T* v, const T* dout, const float* lse,
                              const float* delta, long long H, long long Tq, long long Tk, int D, float scale,
                              int causal) {
    extern __shared__ float smem[];
    const int DP = D + 1;
    float* Qs = smem;
    float* dOs = Qs + ATT_ROWS * D;
    float* Ks = dOs + ATT_ROWS * D;
    float* Vs = Ks + ATT_KT * DP;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long q0 = (long long)blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nd = (D + 31) / 32;
    for (int e = threadIdx.x; e < ATT_ROWS * D; e += blockDim.x) {
        const int r = e / D, d = e - r * D;
        const long long qi = q0 + r;
        float qv = 0.f, gv = 0.f;
        if (qi < Tq) {
            const long long off = att_row(b, qi, h, Tq, H, D) + d;
            qv = tof(q[off]);
            gv = tof(dout[off]);
        }
        Qs[e] = qv;
        dOs[e] = gv;
    }
    float lse_r[ATT_RPW], del_r[ATT_RPW], acc[ATT_RPW][ATT_MAXND];
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr) {
        const long long qi = q0 + warp * ATT_RPW + rr;
        lse_r[rr] = qi < Tq ? lse[bh * Tq + qi] : 0.f;
        del_r[rr] = qi < Tq ? delta[bh * Tq + qi] : 0.f;
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) acc[rr][i] = 0.f;
    }
    long long kend = Tk;
    if (causal && q0 + ATT_ROWS < kend) kend = q0 + ATT_ROWS;
    for (long long k0 = 0; k0 < kend; k0 += ATT_KT) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_KT * D; e += blockDim.x) {
            const int j = e / D, d = e - j * D;
            const long long kj = k0 + j;
            float kv = 0.f, vv = 0.f;
            if (kj < Tk) {
                const long long off = att_row(b, kj, h, Tk, H, D) + d;
                kv = tof(k[off]);
                vv = tof(v[off]);
            }
            Ks[j * DP + d] = kv;
            Vs[j * DP + d] = vv;
        }
        __syncthreads();
        const int nk = (int)(Tk - k0 < ATT_KT ? Tk - k0 : ATT_KT);
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; ++rr) {
            const int r = warp * ATT_RPW + rr;
            const long long qi = q0 + r;
            if (qi >= Tq) continue;
            const float* qr = Qs + r * D;
            const float* gr = dOs + r * D;
            const float* kr = Ks + lane * DP;
            const float* vr = Vs + lane * DP;
            float s = 0.f, dp = 0.f;
            for (int d = 0; d < D; ++d) {
                s += qr[d] * kr[d];
                dp += gr[d] * vr[d];
            }
            const bool valid = lane < nk && (!causal || k0 + lane <= qi);
            const float p = valid ? expf(s * scale - lse_r[rr]) : 0.f;
            const float ds = p * (dp - del_r[rr]);
            for (int j = 0; j < nk; ++j) {
                const float dsj = __shfl_sync(0xffffffffu, ds, j);
                const float* kj = Ks + j * DP;
#pragma unroll
                for (int i = 0; i < ATT_MAXND; ++i) {
                    const int d = lane + 32 * i;
                    if (i < nd && d < D) acc[rr][i] += dsj * kj[d];
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr) {
        const long long qi = q0 + warp * ATT_RPW + rr;
        if (qi >= Tq) continue;
        const long long base = att_row(b, qi, h, Tq, H, D);
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) {
            const int d = lane + 32 * i;
            if (i < nd && d < D) dq[base + d] = fromf<T>(tof(dq[base + d]) + scale * acc[rr][i]);
        }
    }
}
#define K_ATT_DQ(S, T)                                                                                           \
    extern "C" __global__ void __launch_bounds__(32 * ATT_WARPS)                                                 \
        attn_bwd_dq_##S(T* dq, const T* q, const T* k, const T* v, const T* dout, const float* lse,               \
                        const float* delta, long long H, long long Tq, long long Tk, int D, float scale,         \
                        int causal) {                                                                            \
        attn_bwd_dq_k<T>(dq, q, k, v, dout, lse, delta, H, Tq, Tk, D, scale, causal);                            \
    }
FOR_EACH_DTYPE(K_ATT_DQ)

// dv_j += sum_i P_ij dO_i; dk_j += scale * sum_i dS_ij Q_i. Grid
// (ceil(Tk/ATT_ROWS), B*H): each warp owns ATT_RPW key rows; query rows are
// streamed in tiles of 32 (one per lane).
// Shared: Ks[ROWS][D], Vs[ROWS][D], Qs[KT][D+1], dOs[KT][D+1], Ls[KT], Dl[KT].
template <class T>
__device__ void attn_bwd_dkdv_k(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout, const float* lse,
                                const float* delta, long long H, long long Tq, long long Tk, int D, float scale,
                                int causal) {
    extern __shared__ float smem[];
    const int DP = D + 1;
    float* Ks = smem;
    float* Vs = Ks + ATT_ROWS * D;
    float* Qs = Vs + ATT_ROWS * D;
    float* dOs = Qs + ATT_KT * DP;
    float* Ls = dOs + ATT_KT * DP;
    float* Dl = Ls + ATT_KT;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long j0 = (long long)blockIdx.x * ATT_ROWS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nd = (D + 31) / 32;
    for (int e = threadIdx.x; e < ATT_ROWS * D; e += blockDim.x) {
        const int r = e / D, d = e - r * D;
        const long long kj = j0 + r;
        float kv = 0.f, vv = 0.f;
        if (kj < Tk) {
            const long long off = att_row(b, kj, h, Tk, H, D) + d;
            kv = tof(k[off]);
            vv = tof(v[off]);
        }
        Ks[e] = kv;
        Vs[e] = vv;
    }
    float accK[ATT_RPW][ATT_MAXND], accV[ATT_RPW][ATT_MAXND];
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr)
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) accK[rr][i] = accV[rr][i] = 0.f;
    const long long istart = causal ? j0 : 0; // query i sees key j only if j <= i
    for (long long i0 = istart; i0 < Tq; i0 += ATT_KT) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_KT * D; e += blockDim.x) {
            const int j = e / D, d = e - j * D;
            const long long qi = i0 + j;
            float qv = 0.f, gv = 0.f;
            if (qi < Tq) {
                const long long off = att_row(b, qi, h, Tq, H, D) + d;
                qv = tof(q[off]);
                gv = tof(dout[off]);
            }
            Qs[j * DP + d] = qv;
            dOs[j * DP + d] = gv;
        }
        if (threadIdx.x < ATT_KT) {
            const long long qi = i0 + threadIdx.x;
            Ls[threadIdx.x] = qi < Tq ? lse[bh * Tq + qi] : 0.f;
            Dl[threadIdx.x] = qi < Tq ? delta[bh * Tq + qi] : 0.f;
        }
        __syncthreads();
        const int nq = (int)(Tq - i0 < ATT_KT ? Tq - i0 : ATT_KT);
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; ++rr) {
            const int r = warp * ATT_RPW + rr;
            const long long kj = j0 + r;
            if (kj >= Tk) continue;
            const float* kr = Ks + r * D;
            const float* vr = Vs + r * D;
            const float* qr = Qs + lane * DP;
            const float* gr = dOs + lane * DP;
            float s = 0.f, dp = 0.f;
            for (int d = 0; d < D; ++d) {
                s += qr[d] * kr[d];
                dp += gr[d] * vr[d];
            }
            const bool valid = lane < nq && (!causal || kj <= i0 + lane);
            const float p = valid ? expf(s * scale - Ls[lane]) : 0.f;
            const float ds = p * (dp - Dl[lane]);
            for (int j = 0; j < nq; ++j) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                const float dsj = __shfl_sync(0xffffffffu, ds, j);
                const float* qj = Qs + j * DP;
                const float* gj = dOs + j * DP;
#pragma unroll
                for (int i = 0; i < ATT_MAXND; ++i) {
                    const int d = lane + 32 * i;
                    if (i < nd && d < D) {
                        accV[rr][i] += pj * gj[d];
                        accK[rr][i] += dsj * qj[d];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; ++rr) {
        const long long kj = j0 + warp * ATT_RPW + rr;
        if (kj >= Tk) continue;
        const long long base = att_row(b, kj, h, Tk, H, D);
#pragma unroll
        for (int i = 0; i < ATT_MAXND; ++i) {
            const int d = lane + 32 * i;
            if (i < nd && d < D) {
                if (dk) dk[base + d] = fromf<T>(tof(dk[base + d]) + scale * accK[rr][i]);
                if (dv) dv[base + d] = fromf<T>(tof(dv[base + d]) + accV[rr][i]);
            }
        }
    }
}
#define K_ATT_DKDV(S, T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * ATT_WARPS)                                                 \
        attn_bwd_dkdv_##S(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout, const float* lse,      \
                          const float* delta, long long H, long long Tq, long long Tk, int D, float scale,       \
                          int causal) {                                                                          \
        attn_bwd_dkdv_k<T>(dk, dv, q, k, v, dout, lse, delta, H, Tq, Tk, D, scale, causal);                      \
    }
FOR_EACH_DTYPE(K_ATT_DKDV)

// Log-sum-exp of each row of the F32 scores s[rows, cols] (already scaled),
// for the GEMM-softmax-GEMM path of head dims above 256. Row r = b·Tq + i
// of head h is written to lse[(b·H + h)·Tq + i]. One block per row.
extern "C" __global__ void attn_row_lse_f32(float* lse, const float* s, long long cols, long long Tq, long long H,
                                            long long h) {
    __shared__ float sh[32];
    const long long r = blockIdx.x, base = r * cols;
    float m = -INFINITY;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, s[base + c]);
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
    float sum = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(s[base + c] - m);
    sum = block_sum(sum, sh);
    if (threadIdx.x == 0) {
        const long long b = r / Tq, i = r - b * Tq;
        lse[(b * H + h) * Tq + i] = m + logf(sum);
    }
}
