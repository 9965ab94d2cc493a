// The element types the CUDA launchers take, shared by every op's raw-pointer
// interface (no torch or CUDA device code here: the torch glue includes it).
#pragma once

namespace gankernels {

enum class DType : int {
  Float32 = 0,
  Float64 = 1,
  Float16 = 2,
  BFloat16 = 3,
};

}  // namespace gankernels
