# lowrank codec + quality proxy benchmark: encode/decode time, achieved ratio, error per R,
# and quality-proxy cost and values per config.
add_executable(lowrank_bench ${CMAKE_CURRENT_LIST_DIR}/lowrank_bench.cc)
target_link_libraries(lowrank_bench PRIVATE ac_kernels)
