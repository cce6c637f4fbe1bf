// elementwise.cu: fill, cast, unary, GEGLU, binary with broadcasting,
// scale/axpy, strided copies, permute. One thread per element, grid-stride.

template <class T> __device__ void fill_k(T* y, long long n, float v) {
    const T t = fromf<T>(v);
    GRID_LOOP(i, n) y[i] = t;
}
#define K_FILL(S, T) extern "C" __global__ void fill_##S(T* y, long long n, float v) { fill_k<T>(y, n, v); }
FOR_EACH_DTYPE(K_FILL)

template <class TD, class TS> __device__ void cast_k(TD* y, const TS* x, long long n) {
    GRID_LOOP(i, n) y[i] = fromf<TD>(tof(x[i]));
}
#define K_CAST(SD, TD, SS, TS) \
    extern "C" __global__ void cast_##SD##_##SS(TD* y, const TS* x, long long n) { cast_k<TD, TS>(y, x, n); }
K_CAST(f32, float, f32, float)
K_CAST(f32, float, f16, f16)
K_CAST(f32, float, bf16, bf16)
K_CAST(f16, f16, f32, float)
K_CAST(f16, f16, f16, f16)
K_CAST(f16, f16, bf16, bf16)
K_CAST(bf16, bf16, f32, float)
K_CAST(bf16, bf16, f16, f16)
K_CAST(bf16, bf16, bf16, bf16)

// y = f(x); y may alias x (each element read then written by one thread).
template <class T> __device__ void unary_k(T* y, const T* x, long long n, int op) {
    GRID_LOOP(i, n) y[i] = fromf<T>(unary_f(op, tof(x[i])));
}
#define K_UNARY(S, T) \
    extern "C" __global__ void unary_##S(T* y, const T* x, long long n, int op) { unary_k<T>(y, x, n, op); }
FOR_EACH_DTYPE(K_UNARY)

// dx += dy * f'(x)
template <class T> __device__ void unary_bwd_k(T* dx, const T* dy, const T* x, long long n, int op) {
    GRID_LOOP(i, n) dx[i] = fromf<T>(tof(dx[i]) + tof(dy[i]) * unary_df(op, tof(x[i])));
}
#define K_UNARY_BWD(S, T)                                                                           \
    extern "C" __global__ void unary_bwd_##S(T* dx, const T* dy, const T* x, long long n, int op) { \
        unary_bwd_k<T>(dx, dy, x, n, op);                                                           \
    }
FOR_EACH_DTYPE(K_UNARY_BWD)

// GEGLU: x[rows, 2*half] -> y[rows, half] = x[:, :half] * gelu(x[:, half:]).
template <class T> __device__ void geglu_k(T* y, const T* x, long long rows, long long half) {
    GRID_LOOP(i, rows * half) {
        const long long r = i / half, j = i - r * half;
        const float a = tof(x[r * 2 * half + j]), g = tof(x[r * 2 * half + half + j]);
        y[i] = fromf<T>(a * gelu_f(g));
    }
}
#define K_GEGLU(S, T) \
    extern "C" __global__ void geglu_##S(T* y, const T* x, long long rows, long long half) { geglu_k<T>(y, x, rows, half); }
FOR_EACH_DTYPE(K_GEGLU)

// Each i owns the two elements dx[r, j] and dx[r, half+j]: no races.
template <class T> __device__ void geglu_bwd_k(T* dx, const T* dy, const T* x, long long rows, long long half) {
    GRID_LOOP(i, rows * half) {
        const long long r = i / half, j = i - r * half;
        const long long ia = r * 2 * half + j, ig = ia + half;
        const float a = tof(x[ia]), g = tof(x[ig]), d = tof(dy[i]);
        dx[ia] = fromf<T>(tof(dx[ia]) + d * gelu_f(g));
        dx[ig] = fromf<T>(tof(dx[ig]) + d * a * gelu_df(g));
    }
}
#define K_GEGLU_BWD(S, T)                                                                                      \
    extern "C" __global__ void geglu_bwd_##S(T* dx, const T* dy, const T* x, long long rows, long long half) { \
        geglu_bwd_k<T>(dx, dy, x, rows, half);                                                                 \
    }
FOR_EACH_DTYPE(K_GEGLU_BWD)

// Binary: y[i] = a[i] op b[(i/inner) % blen]; op 1 add, 2 mul. y may alias a.
template <class T>
__device__ void binary_k(T* y, const T* a, const T* b, long long n, long long inner, long long blen, int op) {
    GRID_LOOP(i, n) {
        const float av = tof(a[i]), bv = tof(b[(i / inner) % blen]);
        y[i] = fromf<T>(op == 1 ? av + bv : av * bv);
    }
}
#define K_BINARY(S, T)                                                                                         \
    extern "C" __global__ void binary_##S(T* y, const T* a, const T* b, long long n, long long inner, long long blen, \
                                          int op) {                                                            \
        binary_k<T>(y, a, b, n, inner, blen, op);                                                              \
    }
FOR_EACH_DTYPE(K_BINARY)

// da[i] += dy[i] * (op == add ? 1 : b[j]).
template <class T>
__device__ void binary_da_k(T* da, const T* dy, const T* b, long long n, long long inner, long long blen, int op) {
    GRID_LOOP(i, n) {
        float g = tof(dy[i]);
        if (op == 2) g *= tof(b[(i / inner) % blen]);
        da[i] = fromf<T>(tof(da[i]) + g);
    }
}
#define K_BINARY_DA(S, T)                                                                                         \
    extern "C" __global__ void binary_da_##S(T* da, const T* dy, const T* b, long long n, long long inner,         \
                                             long long blen, int op) {                                            \
        binary_da_k<T>(da, dy, b, n, inner, blen, op);                                                            \
    }
FOR_EACH_DTYPE(K_BINARY_DA)

// db[j] += sum over i -> j of dy[i] * (op == add ? 1 : a[i]), for inner > 1:
// one block per j; the elements of j are (o*blen + j)*inner + t for
// o < outer, t < inner, with contiguous t.
template <class T>
__device__ void binary_db_inner_k(T* db, const T* dy, const T* a, long long outer, long long inner, long long blen,
                                  int op) {
    __shared__ float sh[32];
    const long long j = blockIdx.x;
    float s = 0.f;
    for (long long e = threadIdx.x; e < outer * inner; e += blockDim.x) {
        const long long o = e / inner, t = e - o * inner;
        const long long i = (o * blen + j) * inner + t;
        float g = tof(dy[i]);
        if (op == 2) g *= tof(a[i]);
        s += g;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) db[j] = fromf<T>(tof(db[j]) + s);
}
#define K_BINARY_DB_INNER(S, T)                                                                                     \
    extern "C" __global__ void binary_db_inner_##S(T* db, const T* dy, const T* a, long long outer, long long inner, \
                                                   long long blen, int op) {                                        \
        binary_db_inner_k<T>(db, dy, a, outer, inner, blen, op);                                                    \
    }
FOR_EACH_DTYPE(K_BINARY_DB_INNER)

// Column sums for inner == 1: dy viewed as [outer, blen]; block (32, 8)
// covers 32 columns, its 8 rows of threads stride over outer.
template <class T>
__device__ void binary_db_cols_k(T* db, const T* dy, const T* a, long long outer, long long blen, int op) {
    __shared__ float sh[8][33];
    const long long j = (long long)blockIdx.x * 32 + threadIdx.x;
    float s = 0.f;
    if (j < blen) {
        for (long long o = threadIdx.y; o < outer; o += 8) {
            const long long i = o * blen + j;
            float g = tof(dy[i]);
            if (op == 2) g *= tof(a[i]);
            s += g;
        }
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < blen) {
        float t = 0.f;
        for (int r = 0; r < 8; ++r) t += sh[r][threadIdx.x];
        db[j] = fromf<T>(tof(db[j]) + t);
    }
}
#define K_BINARY_DB_COLS(S, T)                                                                                     \
    extern "C" __global__ void binary_db_cols_##S(T* db, const T* dy, const T* a, long long outer, long long blen, \
                                                  int op) {                                                        \
        binary_db_cols_k<T>(db, dy, a, outer, blen, op);                                                           \
    }
FOR_EACH_DTYPE(K_BINARY_DB_COLS)

// y = alpha*x (y may alias x); axpy: y += alpha*x.
template <class T> __device__ void scale_k(T* y, const T* x, long long n, float alpha) {
    GRID_LOOP(i, n) y[i] = fromf<T>(alpha * tof(x[i]));
}
#define K_SCALE(S, T) \
    extern "C" __global__ void scale_##S(T* y, const T* x, long long n, float alpha) { scale_k<T>(y, x, n, alpha); }
FOR_EACH_DTYPE(K_SCALE)

template <class T> __device__ void axpy_k(T* y, const T* x, long long n, float alpha) {
    GRID_LOOP(i, n) y[i] = fromf<T>(tof(y[i]) + alpha * tof(x[i]));
}
#define K_AXPY(S, T) \
    extern "C" __global__ void axpy_##S(T* y, const T* x, long long n, float alpha) { axpy_k<T>(y, x, n, alpha); }
FOR_EACH_DTYPE(K_AXPY)

// dst[doff + r*dstride + c] (+)= src[soff + r*sstride + c].
template <class T>
__device__ void copy2d_k(T* dst, const T* src, long long rows, long long cols, long long doff, long long dstride,
                         long long soff, long long sstride, int acc) {
    GRID_LOOP(i, rows * cols) {
        const long long r = i / cols, c = i - r * cols;
        const long long di = doff + r * dstride + c;
        float v = tof(src[soff + r * sstride + c]);
        if (acc) v += tof(dst[di]);
        dst[di] = fromf<T>(v);
    }
}
#define K_COPY2D(S, T)                                                                                        \
    extern "C" __global__ void copy2d_##S(T* dst, const T* src, long long rows, long long cols, long long doff, \
                                          long long dstride, long long soff, long long sstride, int acc) {      \
        copy2d_k<T>(dst, src, rows, cols, doff, dstride, soff, sstride, acc);                                  \
    }
FOR_EACH_DTYPE(K_COPY2D)

// Permute: y (contiguous, shape odims) from x: for output coordinates c,
// the input offset is sum_k c[k]*istr[k], where istr is x's stride of the
// dimension that became output dim k. Shapes are padded to 6 with 1s.
template <class T> __device__ void permute_k(T* y, const T* x, long long n, Dims6 odims, Dims6 istr, int acc) {
    GRID_LOOP(i, n) {
        long long rem = i, off = 0;
#pragma unroll
        for (int k = 5; k >= 0; --k) {
            const long long c = rem % odims.v[k];
            rem /= odims.v[k];
            off += c * istr.v[k];
        }
        float v = tof(x[off]);
        if (acc) v += tof(y[i]);
        y[i] = fromf<T>(v);
    }
}
#define K_PERMUTE(S, T)                                                                                           \
    extern "C" __global__ void permute_##S(T* y, const T* x, long long n, Dims6 odims, Dims6 istr, int acc) { \
        permute_k<T>(y, x, n, odims, istr, acc);                                                                  \
    }
FOR_EACH_DTYPE(K_PERMUTE)
