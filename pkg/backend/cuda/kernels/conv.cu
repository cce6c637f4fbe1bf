// conv.cu: im2col and col2im for convolution as GEMM.
// col is [nb][C*R*S][P*Q] for nb images: row crs = (c*R + r)*S + s,
// column pq = p*Q + q; element = x[n, c, p*sh - ph + r, q*sw - pw + s] or 0.

struct ConvDims {
    long long C, H, W, R, S, P, Q;
    long long sh, sw, ph, pw;
};

template <class T> __device__ void im2col_k(T* col, const T* x, long long nb, ConvDims d) {
    const long long PQ = d.P * d.Q, CRS = d.C * d.R * d.S;
    GRID_LOOP(i, nb * CRS * PQ) {
        const long long pq = i % PQ, t = i / PQ, crs = t % CRS, n = t / CRS;
        const long long q = pq % d.Q, p = pq / d.Q;
        const long long s = crs % d.S, r = (crs / d.S) % d.R, c = crs / (d.R * d.S);
        const long long h = p * d.sh - d.ph + r, w = q * d.sw - d.pw + s;
        T v = fromf<T>(0.f);
        if (h >= 0 && h < d.H && w >= 0 && w < d.W) v = x[((n * d.C + c) * d.H + h) * d.W + w];
        col[i] = v;
    }
}
#define K_IM2COL(S, T)                                                                                  \
    extern "C" __global__ void im2col_##S(T* col, const T* x, long long nb, ConvDims d) { \
        im2col_k<T>(col, x, nb, d);                                                                     \
    }
FOR_EACH_DTYPE(K_IM2COL)

// col2im, gathering: dx[n, c, h, w] += sum over (r, s) with
// h = p*sh - ph + r and w = q*sw - pw + s inside the output of col[...]
// (dx = the sum, dx not read, when add is 0). One thread per dx element:
// no races.
template <class T> __device__ void col2im_k(T* dx, const float* col, long long nb, ConvDims d, int add) {
    const long long PQ = d.P * d.Q, CRS = d.C * d.R * d.S;
    GRID_LOOP(i, nb * d.C * d.H * d.W) {
        const long long w = i % d.W, t1 = i / d.W, h = t1 % d.H, t2 = t1 / d.H, c = t2 % d.C, n = t2 / d.C;
        float acc = 0.f;
        for (long long r = 0; r < d.R; ++r) {
            const long long hp = h + d.ph - r;
            if (hp < 0 || hp % d.sh != 0) continue;
            const long long p = hp / d.sh;
            if (p >= d.P) continue;
            for (long long s = 0; s < d.S; ++s) {
                const long long wq = w + d.pw - s;
                if (wq < 0 || wq % d.sw != 0) continue;
                const long long q = wq / d.sw;
                if (q >= d.Q) continue;
                acc += col[(n * CRS + (c * d.R + r) * d.S + s) * PQ + p * d.Q + q];
            }
        }
        dx[i] = fromf<T>(add ? tof(dx[i]) + acc : acc);
    }
}
#define K_COL2IM(S, T)                                                                                    \
    extern "C" __global__ void col2im_##S(T* dx, const float* col, long long nb, ConvDims d, int add) { \
        col2im_k<T>(dx, col, nb, d, add);                                                                          \
    }
FOR_EACH_DTYPE(K_COL2IM)
