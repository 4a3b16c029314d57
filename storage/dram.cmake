# The DRAM tier: shared-memory pool, extent allocator, index, leases and LRU eviction.
add_library(ac_storage_dram
  ${CMAKE_CURRENT_LIST_DIR}/dram_tier.cc
  ${CMAKE_CURRENT_LIST_DIR}/extent_allocator.cc
  ${CMAKE_CURRENT_LIST_DIR}/shm_region.cc)
target_link_libraries(ac_storage_dram
  PUBLIC ac_common ac_container absl::status absl::statusor absl::btree absl::flat_hash_map absl::flat_hash_set absl::hash
         absl::synchronization
  PRIVATE absl::strings spdlog::spdlog Threads::Threads)
