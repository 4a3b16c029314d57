# DRAM tier unit tests (real shared memory under /dev/shm, small pools).
ac_unit_test(extent_allocator_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/extent_allocator_test.cc LIBS ac_storage_dram)
ac_unit_test(shm_region_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/shm_region_test.cc LIBS ac_storage_dram)
ac_unit_test(dram_tier_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/dram_tier_test.cc LIBS ac_storage_dram Threads::Threads)
