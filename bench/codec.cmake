# Codec CPU benchmark: encode/decode GB/s (one core) and size ratio per config.
add_executable(codec_bench ${CMAKE_CURRENT_LIST_DIR}/codec_bench.cc)
target_link_libraries(codec_bench PRIVATE ac_kernels)
