# SSD tier benchmark (bench/scripts/30_ssd.sh runs it next to fio and RocksDB BlobDB).
if(TARGET ac_storage_ssd AND NOT TARGET ssd_bench)
  add_executable(ssd_bench ${CMAKE_CURRENT_LIST_DIR}/ssd_bench.cc)
  target_link_libraries(ssd_bench PRIVATE ac_storage_ssd)
endif()
