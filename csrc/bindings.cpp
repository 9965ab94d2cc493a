// The one Python module of the extension: gankernels._C.
#include <torch/extension.h>

#include "cpu/bias_act.h"
#include "cpu/minibatch_stddev.h"
#include "cpu/modulated_conv.h"
#include "cpu/norm_act.h"
#include "cpu/penalty.h"
#include "cpu/spectral_norm.h"
#include "cpu/upfirdn2d.h"
#ifdef GK_WITH_CUDA
#include "cuda/bias_act_launch.h"
#include "cuda/minibatch_stddev_launch.h"
#include "cuda/modulated_conv_launch.h"
#include "cuda/norm_act_launch.h"
#include "cuda/penalty_launch.h"
#include "cuda/spectral_norm_launch.h"
#include "cuda/upfirdn2d_launch.h"
#endif

// The build passes -DGK_SOURCES_HASH=<hex> unquoted (shell quoting differs between
// setuptools and ninja), so stringify it here.
#define GK_STRINGIFY_(x) #x
#define GK_STRINGIFY(x) GK_STRINGIFY_(x)
#ifdef GK_SOURCES_HASH
#define GK_SOURCES_HASH_STR GK_STRINGIFY(GK_SOURCES_HASH)
#else
#define GK_SOURCES_HASH_STR "unknown"
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gankernels C++ kernels (CPU always, CUDA when built with it)";
  // Lets the loader notice an extension built from older sources.
  m.attr("sources_hash") = GK_SOURCES_HASH_STR;
  m.def("sn_power_iteration_cpu", &gankernels::sn_power_iteration_cpu);
  m.def("sn_backward_cpu", &gankernels::sn_backward_cpu);
  m.def("row_sumsq_cpu", &gankernels::row_sumsq_cpu);
  m.def("row_scale_cpu", &gankernels::row_scale_cpu);
  m.def("lerp_rows_cpu", &gankernels::lerp_rows_cpu);
  m.def("lerp_rows_backward_cpu", &gankernels::lerp_rows_backward_cpu);
  m.def("bias_act_forward_cpu", &gankernels::bias_act_forward_cpu);
  m.def("bias_act_grad_cpu", &gankernels::bias_act_grad_cpu);
  m.def("norm_act_stats_cpu", &gankernels::norm_act_stats_cpu);
  m.def("norm_act_forward_cpu", &gankernels::norm_act_forward_cpu);
  m.def("norm_act_backward_cpu", &gankernels::norm_act_backward_cpu);
  m.def("upfirdn2d_forward_cpu", &gankernels::upfirdn2d_forward_cpu);
  m.def("minibatch_stddev_stats_cpu", &gankernels::minibatch_stddev_stats_cpu);
  m.def("minibatch_stddev_stats_grad_cpu", &gankernels::minibatch_stddev_stats_grad_cpu);
  m.def("modconv_weight_cpu", &gankernels::modconv_weight_cpu);
  m.def("modconv_weight_grad_cpu", &gankernels::modconv_weight_grad_cpu);
#ifdef GK_WITH_CUDA
  m.attr("with_cuda") = true;
  m.def("sn_power_iteration_cuda", &sn_power_iteration_cuda);
  m.def("sn_backward_cuda", &sn_backward_cuda);
  m.def("row_sumsq_cuda", &row_sumsq_cuda);
  m.def("row_scale_cuda", &row_scale_cuda);
  m.def("lerp_rows_cuda", &lerp_rows_cuda);
  m.def("lerp_rows_backward_cuda", &lerp_rows_backward_cuda);
  m.def("bias_act_forward_cuda", &bias_act_forward_cuda);
  m.def("bias_act_grad_cuda", &bias_act_grad_cuda);
  m.def("upfirdn2d_forward_cuda", &upfirdn2d_forward_cuda);
  m.def("norm_act_stats_cuda", &norm_act_stats_cuda);
  m.def("norm_act_forward_cuda", &norm_act_forward_cuda);
  m.def("norm_act_backward_cuda", &norm_act_backward_cuda);
  m.def("minibatch_stddev_stats_cuda", &minibatch_stddev_stats_cuda);
  m.def("minibatch_stddev_stats_grad_cuda", &minibatch_stddev_stats_grad_cuda);
  m.def("modconv_weight_cuda", &modconv_weight_cuda);
  m.def("modconv_weight_grad_cuda", &modconv_weight_grad_cuda);
#else
  m.attr("with_cuda") = false;
#endif
}
