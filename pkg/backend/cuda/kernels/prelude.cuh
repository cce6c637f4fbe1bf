// prelude.cuh: prepended to every kernel source of the loco CUDA backend.
// NVRTC may lack cuda_fp16.h / cuda_bf16.h, so the 16-bit storage types and
// their conversions are defined here with inline PTX and bit arithmetic.
// All arithmetic is in float; T is only how elements are stored.

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

typedef unsigned short u16;
struct f16 { u16 x; };
struct bf16 { u16 x; };

__device__ __forceinline__ float tof(float v) { return v; }
__device__ __forceinline__ float tof(f16 v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
    return f;
}
__device__ __forceinline__ float tof(bf16 v) { return __uint_as_float(((unsigned int)v.x) << 16); }

template <class T> __device__ __forceinline__ T fromf(float f);
template <> __device__ __forceinline__ float fromf<float>(float f) { return f; }
template <> __device__ __forceinline__ f16 fromf<f16>(float f) {
    f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
    return h;
}
template <> __device__ __forceinline__ bf16 fromf<bf16>(float f) {
    unsigned int u = __float_as_uint(f);
    bf16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) { // NaN: keep it quiet and NaN
        b.x = (u16)((u >> 16) | 0x40u);
        return b;
    }
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even
    b.x = (u16)(u >> 16);
    return b;
}

// Instantiate a kernel macro once per storage type: M(suffix, type).
#define FOR_EACH_DTYPE(M) M(f32, float) M(f16, f16) M(bf16, bf16)

// Grid-stride loop over [0, n).
#define GRID_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// block_sum returns the sum of v over the block to every thread. sh is 32
// floats of shared memory; blockDim.x is a multiple of 32. Safe to call
// repeatedly with the same sh.
__device__ __forceinline__ float block_sum(float v, float* sh) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // earlier readers of sh are done
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : 0.f;
        t = warp_sum(t);
        if (lane == 0) sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

__device__ __forceinline__ double block_sum_d(double v, double* sh) {
    v = warp_sum_d(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

// Unary ops, numbered as tensor.UnaryOp: 1 SiLU, 2 GELU (erf), 3 QuickGELU.
__device__ __forceinline__ float gelu_f(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_df(float x) {
    const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
__device__ __forceinline__ float unary_f(int op, float x) {
    switch (op) {
    case 1: return x * sigmoidf_(x);
    case 2: return gelu_f(x);
    case 3: return x * sigmoidf_(1.702f * x);
    }
    return __int_as_float(0x7fc00000); // unknown op: NaN
}
__device__ __forceinline__ float unary_df(int op, float x) {
    switch (op) {
    case 1: { const float s = sigmoidf_(x); return s * (1.f + x * (1.f - s)); }
    case 2: return gelu_df(x);
    case 3: { const float s = sigmoidf_(1.702f * x); return s + 1.702f * x * s * (1.f - s); }
    }
    return __int_as_float(0x7fc00000);
}

// Optional per-channel affine parameters (nil pointer: identity).
template <class T> __device__ __forceinline__ float opt(const T* p, long long i, float dflt) { return p ? tof(p[i]) : dflt; }

// Dims6 carries a shape or strides by value (Permute).
struct Dims6 { long long v[6]; };
