#pragma once
// E-MHSA's pooled attention on the image's channel-major layout with the queries in the vector
// lanes (AVX-512 or AVX2), taken by kernels/cpu/pooled_attention.cpp's
// pooled_attention_forward_channels where it applies; kernels/cpu/attention_query_lanes.cpp says
// how data moves.
#include <cstdint>

#include "kernels/cpu/isa.h"

namespace nextvit::kernels::cpu {

#if NEXTVIT_CPU_X86
// Whether the kernel takes a head of d channels and m keys: the GEMM's AVX-512 or AVX2 family
// (kernels/gemm.h), 1 <= m <= 64, d a multiple of 8.
bool attention_query_lanes_applies(int64_t m, int64_t d);

// out = v softmax(scale * k^T q) for one head's query columns [c0, c1): q and out (d, n), k and
// v (d, m), row-major. The same bits as the GEMM, softmax, GEMM path beside it.
void attention_query_lanes(int64_t n, int64_t m, int64_t d, float scale, const float* q,
                           const float* k, const float* v, float* out, int64_t c0, int64_t c1);
#endif

}  // namespace nextvit::kernels::cpu
