# SSD tier tests. Unit tests run under ASan+UBSan too; the crash test is integration.
if(TARGET ssd_tier_test OR NOT TARGET ac_storage_ssd)
  return()
endif()
ac_unit_test(ssd_format_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/ssd_format_test.cc LIBS ac_storage_ssd)
ac_unit_test(ssd_tier_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/ssd_tier_test.cc LIBS ac_storage_ssd)
ac_unit_test(ssd_fault_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/ssd_fault_test.cc LIBS ac_storage_ssd)
ac_unit_test(ssd_reclaim_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/ssd_reclaim_test.cc LIBS ac_storage_ssd)
if(NOT ADAPTCACHE_FUZZ AND NOT ADAPTCACHE_SANITIZE)
  add_executable(ssd_crash_child ${CMAKE_CURRENT_LIST_DIR}/ssd_crash_child.cc)
  target_link_libraries(ssd_crash_child PRIVATE ac_storage_ssd)
  ac_integration_test(ssd_crash_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/ssd_crash_test.cc
                      LIBS ac_storage_ssd DEPENDS ssd_crash_child)
endif()
