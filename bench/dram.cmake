# DRAM tier benchmark: allocator/tier op costs, fragmentation, index bytes per entry.
add_executable(dram_bench ${CMAKE_CURRENT_LIST_DIR}/dram_bench.cc)
target_link_libraries(dram_bench PRIVATE ac_storage_dram)
