package cuda

import (
	"embed"
	"path"
	"sort"
	"strings"
)

//go:embed kernels/*.cu kernels/*.cuh
var kernelFS embed.FS

// kernelSources are the compilable kernel sources (prelude prepended), by
// file name without the .cu suffix: "elementwise", "norm", ...
func kernelSources() map[string]string {
	prelude, err := kernelFS.ReadFile("kernels/prelude.cuh")
	if err != nil {
		panic("cuda: embedded prelude missing: " + err.Error())
	}
	entries, err := kernelFS.ReadDir("kernels")
	if err != nil {
		panic("cuda: embedded kernels missing: " + err.Error())
	}
	out := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".cu") {
			continue
		}
		body, err := kernelFS.ReadFile(path.Join("kernels", e.Name()))
		if err != nil {
			panic(err)
		}
		out[strings.TrimSuffix(e.Name(), ".cu")] = string(prelude) + "\n#line 1 \"" + e.Name() + "\"\n" + string(body)
	}
	return out
}

// kernelModules lists the module names in a stable order.
func kernelModules() []string {
	var names []string
	for n := range kernelSources() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// expectedKernels lists, per module, the kernels the Go side launches
// ("%s" is the dtype suffix f32, f16 or bf16). The compile test checks
// every one is in the PTX.
var expectedKernels = map[string][]string{
	"elementwise": {"fill_%s", "cast_f32_f16", "cast_bf16_f32", "unary_%s", "unary_bwd_%s", "geglu_%s", "geglu_bwd_%s",
		"binary_%s", "binary_da_%s", "binary_db_inner_%s", "binary_db_cols_%s", "scale_%s", "axpy_%s",
		"copy2d_%s", "permute_%s"},
	"misc": {"upsample2x_%s", "upsample2x_bwd_%s", "resize_bilinear_%s", "embedding_%s", "embedding_bwd_%s",
		"mse_%s", "mse_bwd_%s", "sumsq_%s", "adamw_f32"},
	"norm": {"groupnorm_%s", "groupnorm_bwd_dx_%s", "groupnorm_bwd_param_%s", "layernorm_%s",
		"layernorm_bwd_dx_%s", "layernorm_bwd_param_%s", "softmax_%s", "softmax_bwd_%s",
		"groupnorm_split_stats_%s", "groupnorm_split_apply_%s", "groupnorm_split_bwd_part_%s", "groupnorm_split_bwd_%s"},
	"conv":      {"im2col_%s", "col2im_%s"},
	"attention": {"attn_fwd_%s", "attn_delta_%s", "attn_bwd_dq_%s", "attn_bwd_dkdv_%s", "attn_row_lse_f32"},
}
