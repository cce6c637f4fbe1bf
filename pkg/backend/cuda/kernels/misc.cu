// misc.cu: nearest 2x upsample, bilinear resize, embedding, MSE, sum of
// squares, AdamW.

// y[c, oy, ox] = x[c, oy/2, ox/2]; x is [nc, h, w].
template <class T> __device__ void upsample2x_k(T* y, const T* x, long long nc, long long h, long long w) {
    const long long ow = 2 * w, oh = 2 * h;
    GRID_LOOP(i, nc * oh * ow) {
        const long long ox = i % ow, t = i / ow, oy = t % oh, c = t / oh;
        y[i] = x[(c * h + oy / 2) * w + ox / 2];
    }
}
#define K_UP(S, T)                                                                                           \
    extern "C" __global__ void upsample2x_##S(T* y, const T* x, long long nc, long long h, long long w) { \
        upsample2x_k<T>(y, x, nc, h, w);                                                                     \
    }
FOR_EACH_DTYPE(K_UP)

// dx[c, iy, ix] += sum of dy[c, 2iy+a, 2ix+b], a, b in {0, 1}.
template <class T> __device__ void upsample2x_bwd_k(T* dx, const T* dy, long long nc, long long h, long long w) {
    const long long ow = 2 * w;
    GRID_LOOP(i, nc * h * w) {
        const long long ix = i % w, t = i / w, iy = t % h, c = t / h;
        const long long base = (c * 2 * h + 2 * iy) * ow + 2 * ix;
        const float s = tof(dy[base]) + tof(dy[base + 1]) + tof(dy[base + ow]) + tof(dy[base + ow + 1]);
        dx[i] = fromf<T>(tof(dx[i]) + s);
    }
}
#define K_UP_BWD(S, T)                                                                                             \
    extern "C" __global__ void upsample2x_bwd_##S(T* dx, const T* dy, long long nc, long long h, long long w) { \
        upsample2x_bwd_k<T>(dx, dy, nc, h, w);                                                                     \
    }
FOR_EACH_DTYPE(K_UP_BWD)

// PyTorch bilinear, align_corners=False: src = max(scale*(dst+0.5)-0.5, 0).
template <class T>
__device__ void resize_bilinear_k(T* y, const T* x, long long nc, long long h, long long w, long long oh, long long ow) {
    const float sh = (float)h / (float)oh, sw = (float)w / (float)ow;
    GRID_LOOP(i, nc * oh * ow) {
        const long long ox = i % ow, t = i / ow, oy = t % oh, c = t / oh;
        float fy = fmaxf(sh * ((float)oy + 0.5f) - 0.5f, 0.f);
        float fx = fmaxf(sw * ((float)ox + 0.5f) - 0.5f, 0.f);
        long long y0 = (long long)fy, x0 = (long long)fx;
        if (y0 > h - 1) y0 = h - 1;
        if (x0 > w - 1) x0 = w - 1;
        const long long y1 = y0 < h - 1 ? y0 + 1 : y0, x1 = x0 < w - 1 ? x0 + 1 : x0;
        const float ly = fy - (float)y0, lx = fx - (float)x0;
        const T* p = x + c * h * w;
        const float v00 = tof(p[y0 * w + x0]), v01 = tof(p[y0 * w + x1]);
        const float v10 = tof(p[y1 * w + x0]), v11 = tof(p[y1 * w + x1]);
        y[i] = fromf<T>((1.f - ly) * ((1.f - lx) * v00 + lx * v01) + ly * ((1.f - lx) * v10 + lx * v11));
    }
}
#define K_RESIZE(S, T)                                                                                    \
    extern "C" __global__ void resize_bilinear_##S(T* y, const T* x, long long nc, long long h, long long w, \
                                                   long long oh, long long ow) {                           \
        resize_bilinear_k<T>(y, x, nc, h, w, oh, ow);                                                     \
    }
FOR_EACH_DTYPE(K_RESIZE)

// y[i, d] = table[ids[i], d].
template <class T> __device__ void embedding_k(T* y, const T* table, const int* ids, long long n, long long dim) {
    GRID_LOOP(i, n * dim) {
        const long long r = i / dim, d = i - r * dim;
        y[i] = table[(long long)ids[r] * dim + d];
    }
}
#define K_EMB(S, T)                                                                                              \
    extern "C" __global__ void embedding_##S(T* y, const T* table, const int* ids, long long n, long long dim) { \
        embedding_k<T>(y, table, ids, n, dim);                                                                   \
    }
FOR_EACH_DTYPE(K_EMB)

// dtable[uid[u], d] += sum of dy[pos[p], d] for p in [start[u], start[u+1]):
// one block per distinct id, so no two threads touch one row (no atomics).
template <class T>
__device__ void embedding_bwd_k(T* dtable, const T* dy, const int* uid, const int* start, const int* pos, long long dim) {
    const int u = blockIdx.x;
    const long long row = (long long)uid[u] * dim;
    for (long long d = threadIdx.x; d < dim; d += blockDim.x) {
        float s = 0.f;
        for (int p = start[u]; p < start[u + 1]; ++p) s += tof(dy[(long long)pos[p] * dim + d]);
        dtable[row + d] = fromf<T>(tof(dtable[row + d]) + s);
    }
}
#define K_EMB_BWD(S, T)                                                                                   \
    extern "C" __global__ void embedding_bwd_##S(T* dtable, const T* dy, const int* uid, const int* start, \
                                                 const int* pos, long long dim) {                         \
        embedding_bwd_k<T>(dtable, dy, uid, start, pos, dim);                                             \
    }
FOR_EACH_DTYPE(K_EMB_BWD)

// loss[r] = mean_c (a - b)^2; one block per row.
template <class T> __device__ void mse_k(float* loss, const T* a, const T* b, long long cols) {
    __shared__ float sh[32];
    const long long base = (long long)blockIdx.x * cols;
    float s = 0.f;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = tof(a[base + c]) - tof(b[base + c]);
        s += d * d;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) loss[blockIdx.x] = s / (float)cols;
}
#define K_MSE(S, T) \
    extern "C" __global__ void mse_##S(float* loss, const T* a, const T* b, long long cols) { mse_k<T>(loss, a, b, cols); }
FOR_EACH_DTYPE(K_MSE)

// da += g[r]*2*(a-b)/cols; db -= the same (db may be null).
template <class T>
__device__ void mse_bwd_k(T* da, T* db, const float* g, const T* a, const T* b, long long rows, long long cols) {
    GRID_LOOP(i, rows * cols) {
        const long long r = i / cols;
        const float v = g[r] * 2.f * (tof(a[i]) - tof(b[i])) / (float)cols;
        if (da) da[i] = fromf<T>(tof(da[i]) + v);
        if (db) db[i] = fromf<T>(tof(db[i]) - v);
    }
}
#define K_MSE_BWD(S, T)                                                                                       \
    extern "C" __global__ void mse_bwd_##S(T* da, T* db, const float* g, const T* a, const T* b, long long rows, \
                                           long long cols) {                                                  \
        mse_bwd_k<T>(da, db, g, a, b, rows, cols);                                                            \
    }
FOR_EACH_DTYPE(K_MSE_BWD)

// part[blockIdx.x] = sum of x^2 over this block's grid-stride share, in double.
template <class T> __device__ void sumsq_k(double* part, const T* x, long long n) {
    __shared__ double sh[32];
    double s = 0.0;
    GRID_LOOP(i, n) {
        const double v = (double)tof(x[i]);
        s += v * v;
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
#define K_SUMSQ(S, T) \
    extern "C" __global__ void sumsq_##S(double* part, const T* x, long long n) { sumsq_k<T>(part, x, n); }
FOR_EACH_DTYPE(K_SUMSQ)

// torch.optim.AdamW, one thread per parameter:
//   p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   p -= step_size * m / (sqrt(v)/sqrt_bc2 + eps), step_size = lr/bc1.
extern "C" __global__ void adamw_f32(float* param, const float* grad, float* m, float* v, long long n, float lr,
                                     float beta1, float beta2, float eps, float wd, float step_size, float sqrt_bc2,
                                     float gscale) {
    GRID_LOOP(i, n) {
        const float g = grad[i] * gscale;
        float p = param[i] * (1.f - lr * wd);
        const float mi = beta1 * m[i] + (1.f - beta1) * g;
        const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
        p -= step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
        m[i] = mi;
        v[i] = vi;
        param[i] = p;
    }
}
