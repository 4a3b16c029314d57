# Tier manager tests (real DRAM pool in /dev/shm, real SSD tier under /var/tmp).
if(TARGET tier_manager_test OR NOT TARGET ac_storage_tiering)
  return()
endif()
ac_unit_test(tier_manager_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tier_manager_test.cc
             LIBS ac_storage_tiering)
