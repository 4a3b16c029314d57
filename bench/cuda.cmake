# GPU decode/encode benchmark (bench/cuda_decode_bench.cu, run by bench/scripts/60_cuda.sh).
if(ADAPTCACHE_HAVE_CUDA AND TARGET ac_kernels_cuda)
  # CMake < 3.26 knows no C++20 flag for nvcc (see kernels/cuda/CMakeLists.txt).
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  add_executable(cuda_decode_bench ${CMAKE_CURRENT_LIST_DIR}/cuda_decode_bench.cu)
  target_link_libraries(cuda_decode_bench PRIVATE ac_kernels_cuda)
endif()
