# GPU fetch benchmark (bench/gpu_fetch_bench.cc): GetToDevice end to end against a running
# daemon, next to the H2D copy + decode limit. Needs the CUDA client (ac_client_cuda).
if(TARGET ac_client_cuda)
  add_executable(gpu_fetch_bench ${CMAKE_CURRENT_LIST_DIR}/gpu_fetch_bench.cc)
  target_link_libraries(gpu_fetch_bench PRIVATE ac_client_cuda absl::strings absl::str_format)
endif()
