# Tier manager benchmark (bench/scripts/35_tiering.sh).
if(TARGET ac_storage_tiering AND NOT TARGET tiering_bench)
  add_executable(tiering_bench ${CMAKE_CURRENT_LIST_DIR}/tiering_bench.cc)
  target_link_libraries(tiering_bench PRIVATE ac_storage_tiering)
endif()
