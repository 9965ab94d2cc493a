// The Python module of the emulated CUDA kernels (gk_cuda_emu, a test build: see
// gankernels/_build.py, emu_build). It takes the torch glue of csrc/cuda as it is,
// compiled with GK_CUDA_EMU so that it accepts CPU tensors, and binds the same
// functions under the same names as csrc/bindings.cpp binds for the real kernels.
//
// The glue files are compiled in this one translation unit, each inside a namespace of
// its own (their helpers have the same names): the torch headers, which dominate the
// build time, are then parsed once instead of once per file.
#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

// Every header the glue files include, here at global scope first: inside the
// namespaces below their include guards keep them out.
#include "cuda/bias_act.h"
#include "cuda/bias_act_launch.h"
#include "cuda/launch_utils.h"
#include "cuda/minibatch_stddev.h"
#include "cuda/minibatch_stddev_launch.h"
#include "cuda/modulated_conv.h"
#include "cuda/modulated_conv_launch.h"
#include "cuda/norm_act.h"
#include "cuda/norm_act_launch.h"
#include "cuda/penalty.h"
#include "cuda/penalty_launch.h"
#include "cuda/spectral_norm.h"
#include "cuda/spectral_norm_launch.h"
#include "cuda/upfirdn2d.h"
#include "cuda/upfirdn2d_launch.h"

#ifndef GK_CUDA_EMU
#error "build the emulated module with -DGK_CUDA_EMU"
#endif

namespace glue_bias_act {
#include "cuda/bias_act_launch.cpp"
}
namespace glue_minibatch_stddev {
#include "cuda/minibatch_stddev_launch.cpp"
}
namespace glue_modulated_conv {
#include "cuda/modulated_conv_launch.cpp"
}
namespace glue_norm_act {
#include "cuda/norm_act_launch.cpp"
}
namespace glue_penalty {
#include "cuda/penalty_launch.cpp"
}
namespace glue_spectral_norm {
#include "cuda/spectral_norm_launch.cpp"
}
namespace glue_upfirdn2d {
#include "cuda/upfirdn2d_launch.cpp"
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gankernels CUDA kernels emulated on the CPU (a test build)";
  m.def("sn_power_iteration_cuda", &glue_spectral_norm::sn_power_iteration_cuda);
  m.def("sn_backward_cuda", &glue_spectral_norm::sn_backward_cuda);
  m.def("row_sumsq_cuda", &glue_penalty::row_sumsq_cuda);
  m.def("row_scale_cuda", &glue_penalty::row_scale_cuda);
  m.def("lerp_rows_cuda", &glue_penalty::lerp_rows_cuda);
  m.def("lerp_rows_backward_cuda", &glue_penalty::lerp_rows_backward_cuda);
  m.def("bias_act_forward_cuda", &glue_bias_act::bias_act_forward_cuda);
  m.def("bias_act_grad_cuda", &glue_bias_act::bias_act_grad_cuda);
  m.def("upfirdn2d_forward_cuda", &glue_upfirdn2d::upfirdn2d_forward_cuda);
  m.def("norm_act_stats_cuda", &glue_norm_act::norm_act_stats_cuda);
  m.def("norm_act_forward_cuda", &glue_norm_act::norm_act_forward_cuda);
  m.def("norm_act_backward_cuda", &glue_norm_act::norm_act_backward_cuda);
  m.def("minibatch_stddev_stats_cuda", &glue_minibatch_stddev::minibatch_stddev_stats_cuda);
  m.def("minibatch_stddev_stats_grad_cuda",
        &glue_minibatch_stddev::minibatch_stddev_stats_grad_cuda);
  m.def("modconv_weight_cuda", &glue_modulated_conv::modconv_weight_cuda);
  m.def("modconv_weight_grad_cuda", &glue_modulated_conv::modconv_weight_grad_cuda);
}
