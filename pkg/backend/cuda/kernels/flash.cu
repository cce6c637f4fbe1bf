// flash.cu: FlashAttention-2-style attention on tensor cores for 16-bit
// storage (f16, bf16), forward and backward, on q[B,Tq,H,D], k,v[B,Tk,H,D];
// lse and delta are [B,H,Tq] float. Needs sm_80+ (mma.sync m16n8k16 with
// f32 accumulation, ldmatrix, cp.async), all through inline PTX.
//
// The head dim is padded to DP, a multiple of 16 (a template constant);
// the Go side only sends D % 8 == 0, D <= DP, and 16-byte aligned pointers,
// so every row is a whole number of 16-byte chunks and padded chunks are
// zero-filled by cp.async (src-size 0). Rows past Tq / Tk are zero-filled
// too, and their scores masked, so no padding value reaches an output.
//
// A block is FL_THREADS = 4 warps; each warp owns 16 rows of the block's
// resident side (queries in the forward and dq kernels, keys in the dk/dv
// kernel) and streams the other side through double-buffered shared tiles.
// Shared tiles are row-major with a row stride of DP+8 halves: the extra 16
// bytes make the 8 row addresses of every ldmatrix hit distinct banks.
//
// Fragment layouts of mma.m16n8k16 (g = lane>>2, t = lane&3):
//   A 16x16 row-major, 4 regs: {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]}
//   B 16x8 "col", 2 regs:       {B[2t..2t+1][g], B[2t+8..2t+9][g]}
//   C 16x8 f32, 4 regs:         {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]}
// Low 16 bits of a register hold the lower column (A) / row (B) index.
// ldmatrix.x4: lanes 8j..8j+7 give the row addresses of matrix j; matrix j
// lands in register j, lane l holding row l>>2, columns 2(l&3)..+1 (with
// .trans: rows 2(l&3)..+1 of column l>>2).
//
// Scores are kept in the log2 domain: x = s * scale * log2(e), so that
// probabilities are exp2(x - m); lse is converted back to natural log.

#define FL_THREADS 128
#define FL_LOG2E 1.4426950408889634f
#define FL_LN2 0.69314718055994531f

__device__ __forceinline__ unsigned fl_saddr(const void* p) {
    unsigned r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ void fl_ldsm4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void fl_ldsm4t(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// fl_cp16 copies 16 bytes global -> shared asynchronously; when !valid it
// reads nothing and writes 16 zero bytes.
__device__ __forceinline__ void fl_cp16(unsigned dst, const void* src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void fl_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void fl_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// fl_check traps when the launch does not match what the kernel assumes
// (block size, dynamic shared memory), so a Go/C mismatch fails loudly.
__device__ __forceinline__ void fl_check(unsigned need_smem) {
    unsigned have;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(have));
    if (blockDim.x != FL_THREADS || blockDim.y != 1 || have < need_smem) asm volatile("trap;");
}

// Per-type tensor-core product and packing of two floats into one register
// (lo in the low half).
template <class T> struct FlOps;
template <> struct FlOps<f16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r; // cvt.f16x2: the first source goes to the upper half
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ float lo(unsigned w) { f16 h; h.x = (u16)(w & 0xffffu); return tof(h); }
    static __device__ __forceinline__ float hi(unsigned w) { f16 h; h.x = (u16)(w >> 16); return tof(h); }
};
template <> struct FlOps<bf16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ float lo(unsigned w) { return __uint_as_float(w << 16); }
    static __device__ __forceinline__ float hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
};

// fl_load issues cp.async copies of rows t0 .. t0+ROWS-1 of one head
// (element (t, d) at base[t*rs + d], t < T, d < D) into a shared tile
// [ROWS][DP+8] at sm; missing rows and the d >= D padding become zeros.
template <int DP, int ROWS>
__device__ __forceinline__ void fl_load(unsigned sm, const u16* base, long long rs, long long t0, long long T, int D) {
    constexpr int CH = DP / 8, S = DP + 8, N = ROWS * CH;
#pragma unroll
    for (int e0 = 0; e0 < N; e0 += FL_THREADS) {
        const int e = e0 + (int)threadIdx.x;
        if (N % FL_THREADS == 0 || e < N) {
            const int r = e / CH, c = e - r * CH;
            const long long t = t0 + r;
            const bool ok = t < T && c * 8 < D;
            fl_cp16(sm + (unsigned)((r * S + c * 8) * 2), ok ? (const void*)(base + t * rs + c * 8) : (const void*)base, ok);
        }
    }
}

// fl_afrag loads the A fragment of rows row0..row0+15, columns col0..col0+15
// of a row-major shared tile with row stride S halves.
template <int S> __device__ __forceinline__ void fl_afrag(unsigned (&a)[4], unsigned tile, int row0, int col0) {
    const int lane = threadIdx.x & 31;
    fl_ldsm4(a, tile + (unsigned)(((row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * S + col0 + (lane >> 4) * 8) * 2));
}

// fl_bfrag_nt loads B fragments for X·Yᵀ where Y is a row-major shared tile
// (rows = output columns n, columns = reduction k): two n-tiles n0..n0+7
// (b[0], b[1]) and n0+8..n0+15 (b[2], b[3]) over k0..k0+15.
template <int S> __device__ __forceinline__ void fl_bfrag_nt(unsigned (&b)[4], unsigned tile, int n0, int k0) {
    const int lane = threadIdx.x & 31;
    fl_ldsm4(b, tile + (unsigned)(((n0 + (lane & 7) + (lane >> 4) * 8) * S + k0 + ((lane >> 3) & 1) * 8) * 2));
}

// fl_bfrag_nn loads B fragments for X·Y where Y is a row-major shared tile
// (rows = reduction k, columns = output n): n-tiles n0..n0+7 (b[0], b[1])
// and n0+8..n0+15 (b[2], b[3]) over k0..k0+15.
template <int S> __device__ __forceinline__ void fl_bfrag_nn(unsigned (&b)[4], unsigned tile, int k0, int n0) {
    const int lane = threadIdx.x & 31;
    fl_ldsm4t(b, tile + (unsigned)(((k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * S + n0 + (lane >> 4) * 8) * 2));
}

// fl_store2 writes (or, with add, adds into) two consecutive elements.
template <class T> __device__ __forceinline__ void fl_store2(T* p, float x0, float x1, bool add) {
    unsigned* w = (unsigned*)p;
    if (add) {
        const unsigned old = *w;
        x0 += FlOps<T>::lo(old);
        x1 += FlOps<T>::hi(old);
    }
    *w = FlOps<T>::pack(x0, x1);
}

// ---------------------------------------------------------------------------
// Forward. Grid (ceil(Tq/BQ), B*H), BQ = 64 (16 query rows per warp).
// Shared: Qs[BQ][S], Ks[2][BK][S], Vs[2][BK][S] (halves).
template <class T, int DP, int BK>
__device__ __forceinline__ void flash_fwd_k(T* o, float* lse, const T* q, const T* k, const T* v, long long H,
                                            long long Tq, long long Tk, int D, float scale, int causal) {
    constexpr int BQ = 64, S = DP + 8, KD = DP / 16, NKT = BK / 8, NDT = DP / 8;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    fl_check((BQ + 4 * BK) * S * 2);
    const unsigned sQ = fl_saddr(fl_smem);
    const unsigned sK = sQ + BQ * S * 2;
    const unsigned sV = sK + 2 * BK * S * 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long qblk = causal ? (long long)(gridDim.x - 1 - blockIdx.x) : (long long)blockIdx.x;
    const long long q0 = qblk * BQ;
    const int r0 = warp * 16;
    const long long rs = H * D;
    const u16* qg = (const u16*)q + (b * Tq * H + h) * D;
    const u16* kg = (const u16*)k + (b * Tk * H + h) * D;
    const u16* vg = (const u16*)v + (b * Tk * H + h) * D;
    const long long kend = causal ? (Tk < q0 + BQ ? Tk : q0 + BQ) : Tk;
    const int nkb = (int)((kend + BK - 1) / BK);

    fl_load<DP, BQ>(sQ, qg, rs, q0, Tq, D);
    fl_load<DP, BK>(sK, kg, rs, 0, Tk, D);
    fl_load<DP, BK>(sV, vg, rs, 0, Tk, D);
    fl_commit();

    const float sl2 = scale * FL_LOG2E;
    float acc[NDT][4];
#pragma unroll
    for (int i = 0; i < NDT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    unsigned qf[KD][4];

    for (int kb = 0; kb < nkb; ++kb) {
        const int buf = kb & 1;
        if (kb + 1 < nkb) {
            fl_load<DP, BK>(sK + (buf ^ 1) * BK * S * 2, kg, rs, (long long)(kb + 1) * BK, Tk, D);
            fl_load<DP, BK>(sV + (buf ^ 1) * BK * S * 2, vg, rs, (long long)(kb + 1) * BK, Tk, D);
        }
        fl_commit(); // possibly empty: keeps "all but the newest group" meaning this tile
        fl_wait<1>();
        __syncthreads();
        if (kb == 0) {
#pragma unroll
            for (int kd = 0; kd < KD; ++kd) fl_afrag<S>(qf[kd], sQ, r0, kd * 16);
        }
        const unsigned tK = sK + buf * BK * S * 2, tV = sV + buf * BK * S * 2;

        // S = Q Kᵀ for this warp's 16 rows and BK keys.
        float s[NKT][4];
#pragma unroll
        for (int i = 0; i < NKT; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
            for (int np = 0; np < NKT / 2; ++np) {
                unsigned bf[4];
                fl_bfrag_nt<S>(bf, tK, np * 16, kd * 16);
                FlOps<T>::mma(s[2 * np], qf[kd], bf[0], bf[1]);
                FlOps<T>::mma(s[2 * np + 1], qf[kd], bf[2], bf[3]);
            }
        }

        // Scale into the log2 domain, mask, online softmax.
        const long long k0 = (long long)kb * BK;
        const bool mask = k0 + BK > Tk || (causal && k0 + BK - 1 > q0 + r0);
#pragma unroll
        for (int nt = 0; nt < NKT; ++nt) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                float x = s[nt][c] * sl2;
                if (mask) {
                    const long long j = k0 + nt * 8 + 2 * tg + (c & 1);
                    const long long i = q0 + r0 + g + (c >> 1) * 8;
                    if (j >= Tk || (causal && j > i)) x = -INFINITY;
                }
                s[nt][c] = x;
            }
        }
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int nt = 0; nt < NKT; ++nt) {
            mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
            mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
        }
        float mu[2], alpha[2], ls[2] = {0.f, 0.f};
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            mu[r] = mx[r] == -INFINITY ? 0.f : mx[r]; // row fully masked so far: keep exp2 finite
            alpha[r] = exp2f(m[r] - mu[r]);
            m[r] = mx[r];
        }
#pragma unroll
        for (int nt = 0; nt < NKT; ++nt) {
#pragma unroll
            for (int c = 0; c < 4; ++c) s[nt][c] = exp2f(s[nt][c] - mu[c >> 1]);
            ls[0] += s[nt][0] + s[nt][1];
            ls[1] += s[nt][2] + s[nt][3];
        }
        l[0] = l[0] * alpha[0] + ls[0];
        l[1] = l[1] * alpha[1] + ls[1];
#pragma unroll
        for (int i = 0; i < NDT; ++i) {
            acc[i][0] *= alpha[0];
            acc[i][1] *= alpha[0];
            acc[i][2] *= alpha[1];
            acc[i][3] *= alpha[1];
        }

        // O += P V: the score accumulators of key tiles 2kk, 2kk+1 are the A
        // fragment of keys 16kk..16kk+15.
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            unsigned pa[4];
            pa[0] = FlOps<T>::pack(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = FlOps<T>::pack(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = FlOps<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = FlOps<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < NDT / 2; ++dp) {
                unsigned bf[4];
                fl_bfrag_nn<S>(bf, tV, kk * 16, dp * 16);
                FlOps<T>::mma(acc[2 * dp], pa, bf[0], bf[1]);
                FlOps<T>::mma(acc[2 * dp + 1], pa, bf[2], bf[3]);
            }
        }
        __syncthreads(); // this buffer is refilled two iterations on
    }

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
    }
    T* og = o + (b * Tq * H + h) * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long i = q0 + r0 + g + r * 8;
        if (i >= Tq) continue;
#pragma unroll
        for (int dt = 0; dt < NDT; ++dt) {
            const int col = dt * 8 + 2 * tg;
            if (col < D) fl_store2<T>(og + i * rs + col, acc[dt][2 * r] * inv[r], acc[dt][2 * r + 1] * inv[r], false);
        }
        if (tg == 0) lse[bh * Tq + i] = (m[r] + log2f(l[r])) * FL_LN2;
    }
}

// ---------------------------------------------------------------------------
// Backward, keys side: dv_j += Σ_i P_ij dO_i, dk_j += scale Σ_i dS_ij Q_i
// with P_ij = exp(s_ij - lse_i), dS_ij = P_ij (dO_i·V_j - delta_i).
// Grid (ceil(Tk/64), B*H): each warp owns 16 key rows; query tiles of BQ
// rows are streamed. Computed transposed: Sᵀ = K Qᵀ, dPᵀ = V dOᵀ.
// Shared: Ks[64][S], Vs[64][S], Qs[2][BQ][S], dOs[2][BQ][S] (halves), then
// Ls[2][BQ], Dl[2][BQ] (floats; Ls premultiplied by log2 e).
template <class T, int DP, int BQ>
__device__ __forceinline__ void flash_bwd_dkdv_k(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                                                 const float* lse, const float* delta, long long H, long long Tq,
                                                 long long Tk, int D, float scale, int causal, int add) {
    constexpr int BK = 64, S = DP + 8, KD = DP / 16, NQT = BQ / 8, NDT = DP / 8;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    fl_check((2 * BK + 4 * BQ) * S * 2 + 4 * BQ * 4);
    const unsigned sK = fl_saddr(fl_smem);
    const unsigned sV = sK + BK * S * 2;
    const unsigned sQ = sV + BK * S * 2;
    const unsigned sO = sQ + 2 * BQ * S * 2;
    float* Ls = (float*)(fl_smem + (2 * BK + 4 * BQ) * S * 2);
    float* Dl = Ls + 2 * BQ;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long j0 = (long long)blockIdx.x * BK;
    const int r0 = warp * 16;
    const long long rs = H * D;
    const u16* qg = (const u16*)q + (b * Tq * H + h) * D;
    const u16* og = (const u16*)dout + (b * Tq * H + h) * D;
    const u16* kg = (const u16*)k + (b * Tk * H + h) * D;
    const u16* vg = (const u16*)v + (b * Tk * H + h) * D;
    const float* lrow = lse + bh * Tq;
    const float* drow = delta + bh * Tq;
    const long long istart = causal ? j0 / BQ * BQ : 0; // earlier queries see none of these keys
    const int nqb = (int)((Tq - istart + BQ - 1) / BQ);

    fl_load<DP, BK>(sK, kg, rs, j0, Tk, D);
    fl_load<DP, BK>(sV, vg, rs, j0, Tk, D);
    fl_load<DP, BQ>(sQ, qg, rs, istart, Tq, D);
    fl_load<DP, BQ>(sO, og, rs, istart, Tq, D);
    fl_commit();
    for (int x = threadIdx.x; x < BQ; x += FL_THREADS) {
        const long long i = istart + x;
        Ls[x] = i < Tq ? lrow[i] * FL_LOG2E : 0.f;
        Dl[x] = i < Tq ? drow[i] : 0.f;
    }

    const float sl2 = scale * FL_LOG2E;
    float adk[NDT][4], adv[NDT][4];
#pragma unroll
    for (int i = 0; i < NDT; ++i) {
        adk[i][0] = adk[i][1] = adk[i][2] = adk[i][3] = 0.f;
        adv[i][0] = adv[i][1] = adv[i][2] = adv[i][3] = 0.f;
    }

    for (int qb = 0; qb < nqb; ++qb) {
        const int buf = qb & 1;
        const long long i0 = istart + (long long)qb * BQ;
        if (qb + 1 < nqb) {
            fl_load<DP, BQ>(sQ + (buf ^ 1) * BQ * S * 2, qg, rs, i0 + BQ, Tq, D);
            fl_load<DP, BQ>(sO + (buf ^ 1) * BQ * S * 2, og, rs, i0 + BQ, Tq, D);
            for (int x = threadIdx.x; x < BQ; x += FL_THREADS) {
                const long long i = i0 + BQ + x;
                Ls[(buf ^ 1) * BQ + x] = i < Tq ? lrow[i] * FL_LOG2E : 0.f;
                Dl[(buf ^ 1) * BQ + x] = i < Tq ? drow[i] : 0.f;
            }
        }
        fl_commit();
        fl_wait<1>();
        __syncthreads();
        const unsigned tQ = sQ + buf * BQ * S * 2, tO = sO + buf * BQ * S * 2;
        const float* Lb = Ls + buf * BQ;
        const float* Db = Dl + buf * BQ;

        // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ: this warp's 16 keys x BQ queries.
        float st[NQT][4], dpt[NQT][4];
#pragma unroll
        for (int i = 0; i < NQT; ++i) {
            st[i][0] = st[i][1] = st[i][2] = st[i][3] = 0.f;
            dpt[i][0] = dpt[i][1] = dpt[i][2] = dpt[i][3] = 0.f;
        }
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
            unsigned ka[4], va[4];
            fl_afrag<S>(ka, sK, r0, kd * 16);
            fl_afrag<S>(va, sV, r0, kd * 16);
#pragma unroll
            for (int np = 0; np < NQT / 2; ++np) {
                unsigned bq[4], bo[4];
                fl_bfrag_nt<S>(bq, tQ, np * 16, kd * 16);
                fl_bfrag_nt<S>(bo, tO, np * 16, kd * 16);
                FlOps<T>::mma(st[2 * np], ka, bq[0], bq[1]);
                FlOps<T>::mma(st[2 * np + 1], ka, bq[2], bq[3]);
                FlOps<T>::mma(dpt[2 * np], va, bo[0], bo[1]);
                FlOps<T>::mma(dpt[2 * np + 1], va, bo[2], bo[3]);
            }
        }

        // Pᵀ and dSᵀ (without the scale, applied to dk at the end).
        const bool mask = i0 + BQ > Tq || (causal && j0 + r0 + 15 > i0);
#pragma unroll
        for (int nt = 0; nt < NQT; ++nt) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int x = nt * 8 + 2 * tg + (c & 1); // query within the tile
                float p = exp2f(st[nt][c] * sl2 - Lb[x]);
                if (mask) {
                    const long long i = i0 + x;
                    const long long j = j0 + r0 + g + (c >> 1) * 8;
                    if (i >= Tq || (causal && j > i)) p = 0.f;
                }
                st[nt][c] = p;
                dpt[nt][c] = p * (dpt[nt][c] - Db[x]);
            }
        }

        // dV += Pᵀ dO, dK += dSᵀ Q: A from the registers above (k = query).
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            unsigned pa[4], sa[4];
            pa[0] = FlOps<T>::pack(st[2 * kk][0], st[2 * kk][1]);
            pa[1] = FlOps<T>::pack(st[2 * kk][2], st[2 * kk][3]);
            pa[2] = FlOps<T>::pack(st[2 * kk + 1][0], st[2 * kk + 1][1]);
            pa[3] = FlOps<T>::pack(st[2 * kk + 1][2], st[2 * kk + 1][3]);
            sa[0] = FlOps<T>::pack(dpt[2 * kk][0], dpt[2 * kk][1]);
            sa[1] = FlOps<T>::pack(dpt[2 * kk][2], dpt[2 * kk][3]);
            sa[2] = FlOps<T>::pack(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]);
            sa[3] = FlOps<T>::pack(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < NDT / 2; ++dp) {
                unsigned bo[4], bq[4];
                fl_bfrag_nn<S>(bo, tO, kk * 16, dp * 16);
                fl_bfrag_nn<S>(bq, tQ, kk * 16, dp * 16);
                FlOps<T>::mma(adv[2 * dp], pa, bo[0], bo[1]);
                FlOps<T>::mma(adv[2 * dp + 1], pa, bo[2], bo[3]);
                FlOps<T>::mma(adk[2 * dp], sa, bq[0], bq[1]);
                FlOps<T>::mma(adk[2 * dp + 1], sa, bq[2], bq[3]);
            }
        }
        __syncthreads();
    }

    T* dkg = dk ? dk + (b * Tk * H + h) * D : (T*)0;
    T* dvg = dv ? dv + (b * Tk * H + h) * D : (T*)0;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long j = j0 + r0 + g + r * 8;
        if (j >= Tk) continue;
#pragma unroll
        for (int dt = 0; dt < NDT; ++dt) {
            const int col = dt * 8 + 2 * tg;
            if (col >= D) continue;
            if (dkg) fl_store2<T>(dkg + j * rs + col, scale * adk[dt][2 * r], scale * adk[dt][2 * r + 1], add);
            if (dvg) fl_store2<T>(dvg + j * rs + col, adv[dt][2 * r], adv[dt][2 * r + 1], add);
        }
    }
}

// ---------------------------------------------------------------------------
// Backward, queries side: dq_i += scale Σ_j dS_ij K_j. Grid as the forward
// (64 query rows per block, 16 per warp); key tiles of BK rows streamed.
// Shared: Qs[64][S], dOs[64][S], Ks[2][BK][S], Vs[2][BK][S] (halves).
template <class T, int DP, int BK>
__device__ __forceinline__ void flash_bwd_dq_k(T* dq, const T* q, const T* k, const T* v, const T* dout,
                                               const float* lse, const float* delta, long long H, long long Tq,
                                               long long Tk, int D, float scale, int causal, int add) {
    constexpr int BQ = 64, S = DP + 8, KD = DP / 16, NKT = BK / 8, NDT = DP / 8;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    fl_check((2 * BQ + 4 * BK) * S * 2);
    const unsigned sQ = fl_saddr(fl_smem);
    const unsigned sO = sQ + BQ * S * 2;
    const unsigned sK = sO + BQ * S * 2;
    const unsigned sV = sK + 2 * BK * S * 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    const long long bh = blockIdx.y, b = bh / H, h = bh - b * H;
    const long long qblk = causal ? (long long)(gridDim.x - 1 - blockIdx.x) : (long long)blockIdx.x;
    const long long q0 = qblk * BQ;
    const int r0 = warp * 16;
    const long long rs = H * D;
    const u16* qg = (const u16*)q + (b * Tq * H + h) * D;
    const u16* og = (const u16*)dout + (b * Tq * H + h) * D;
    const u16* kg = (const u16*)k + (b * Tk * H + h) * D;
    const u16* vg = (const u16*)v + (b * Tk * H + h) * D;
    const long long kend = causal ? (Tk < q0 + BQ ? Tk : q0 + BQ) : Tk;
    const int nkb = (int)((kend + BK - 1) / BK);

    fl_load<DP, BQ>(sQ, qg, rs, q0, Tq, D);
    fl_load<DP, BQ>(sO, og, rs, q0, Tq, D);
    fl_load<DP, BK>(sK, kg, rs, 0, Tk, D);
    fl_load<DP, BK>(sV, vg, rs, 0, Tk, D);
    fl_commit();

    float lr[2], dr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long i = q0 + r0 + g + r * 8;
        lr[r] = i < Tq ? lse[bh * Tq + i] * FL_LOG2E : 0.f;
        dr[r] = i < Tq ? delta[bh * Tq + i] : 0.f;
    }
    const float sl2 = scale * FL_LOG2E;
    float adq[NDT][4];
#pragma unroll
    for (int i = 0; i < NDT; ++i) adq[i][0] = adq[i][1] = adq[i][2] = adq[i][3] = 0.f;

    for (int kb = 0; kb < nkb; ++kb) {
        const int buf = kb & 1;
        if (kb + 1 < nkb) {
            fl_load<DP, BK>(sK + (buf ^ 1) * BK * S * 2, kg, rs, (long long)(kb + 1) * BK, Tk, D);
            fl_load<DP, BK>(sV + (buf ^ 1) * BK * S * 2, vg, rs, (long long)(kb + 1) * BK, Tk, D);
        }
        fl_commit();
        fl_wait<1>();
        __syncthreads();
        const unsigned tK = sK + buf * BK * S * 2, tV = sV + buf * BK * S * 2;

        // S = Q Kᵀ, dP = dO Vᵀ for this warp's 16 rows and BK keys.
        float s[NKT][4], dp[NKT][4];
#pragma unroll
        for (int i = 0; i < NKT; ++i) {
            s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
            dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.f;
        }
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
            unsigned qa[4], oa[4];
            fl_afrag<S>(qa, sQ, r0, kd * 16);
            fl_afrag<S>(oa, sO, r0, kd * 16);
#pragma unroll
            for (int np = 0; np < NKT / 2; ++np) {
                unsigned bk[4], bv[4];
                fl_bfrag_nt<S>(bk, tK, np * 16, kd * 16);
                fl_bfrag_nt<S>(bv, tV, np * 16, kd * 16);
                FlOps<T>::mma(s[2 * np], qa, bk[0], bk[1]);
                FlOps<T>::mma(s[2 * np + 1], qa, bk[2], bk[3]);
                FlOps<T>::mma(dp[2 * np], oa, bv[0], bv[1]);
                FlOps<T>::mma(dp[2 * np + 1], oa, bv[2], bv[3]);
            }
        }

        const long long k0 = (long long)kb * BK;
        const bool mask = k0 + BK > Tk || (causal && k0 + BK - 1 > q0 + r0);
#pragma unroll
        for (int nt = 0; nt < NKT; ++nt) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                float p = exp2f(s[nt][c] * sl2 - lr[c >> 1]);
                if (mask) {
                    const long long j = k0 + nt * 8 + 2 * tg + (c & 1);
                    const long long i = q0 + r0 + g + (c >> 1) * 8;
                    if (j >= Tk || (causal && j > i)) p = 0.f;
                }
                dp[nt][c] = p * (dp[nt][c] - dr[c >> 1]);
            }
        }

        // dQ += dS K: A = dS (k = key), B = K tile read as [key][d].
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            unsigned sa[4];
            sa[0] = FlOps<T>::pack(dp[2 * kk][0], dp[2 * kk][1]);
            sa[1] = FlOps<T>::pack(dp[2 * kk][2], dp[2 * kk][3]);
            sa[2] = FlOps<T>::pack(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
            sa[3] = FlOps<T>::pack(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
#pragma unroll
            for (int dd = 0; dd < NDT / 2; ++dd) {
                unsigned bk[4];
                fl_bfrag_nn<S>(bk, tK, kk * 16, dd * 16);
                FlOps<T>::mma(adq[2 * dd], sa, bk[0], bk[1]);
                FlOps<T>::mma(adq[2 * dd + 1], sa, bk[2], bk[3]);
            }
        }
        __syncthreads();
    }

    T* dqg = dq + (b * Tq * H + h) * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long i = q0 + r0 + g + r * 8;
        if (i >= Tq) continue;
#pragma unroll
        for (int dt = 0; dt < NDT; ++dt) {
            const int col = dt * 8 + 2 * tg;
            if (col < D) fl_store2<T>(dqg + i * rs + col, scale * adq[dt][2 * r], scale * adq[dt][2 * r + 1], add);
        }
    }
}

// Instantiations: FL_INST(suffix, type, DP, forward BK, dk/dv BQ, dq BK).
// The tile sizes must match flashConfigs in ops_flash.go (the kernels trap
// when given less shared memory than they need).
#define FL_INST(SX, T, DP, FBK, KBQ, QBK)                                                                        \
    extern "C" __global__ void __launch_bounds__(FL_THREADS)                                                     \
        flash_fwd_##SX##_d##DP(T* o, float* lse, const T* q, const T* k, const T* v, long long H, long long Tq,     \
                               long long Tk, int D, float scale, int causal) {                                   \
        flash_fwd_k<T, DP, FBK>(o, lse, q, k, v, H, Tq, Tk, D, scale, causal);                                    \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FL_THREADS)                                                     \
        flash_bwd_dkdv_##SX##_d##DP(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,               \
                                    const float* lse, const float* delta, long long H, long long Tq,             \
                                    long long Tk, int D, float scale, int causal, int add) {                     \
        flash_bwd_dkdv_k<T, DP, KBQ>(dk, dv, q, k, v, dout, lse, delta, H, Tq, Tk, D, scale, causal, add);        \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FL_THREADS)                                                     \
        flash_bwd_dq_##SX##_d##DP(T* dq, const T* q, const T* k, const T* v, const T* dout, const float* lse,     \
                                  const float* delta, long long H, long long Tq, long long Tk, int D,            \
                                  float scale, int causal, int add) {                                            \
        flash_bwd_dq_k<T, DP, QBK>(dq, q, k, v, dout, lse, delta, H, Tq, Tk, D, scale, causal, add);              \
    }
#define FL_DIMS(SX, T)                                                                                           \
    FL_INST(SX, T, 32, 64, 64, 64)                                                                               \
    FL_INST(SX, T, 48, 64, 64, 64)                                                                               \
    FL_INST(SX, T, 64, 64, 64, 64)                                                                               \
    FL_INST(SX, T, 80, 64, 64, 64)                                                                               \
    FL_INST(SX, T, 96, 32, 32, 32)                                                                               \
    FL_INST(SX, T, 128, 32, 32, 32)                                                                              \
    FL_INST(SX, T, 160, 32, 32, 32)
FL_DIMS(f16, f16)
FL_DIMS(bf16, bf16)
