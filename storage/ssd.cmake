# SSD tier: io_uring segment log + RocksDB index (storage/ssd_tier.h).
if(TARGET ac_storage_ssd)
  return()
endif()
add_library(ac_storage_ssd
  ${CMAKE_CURRENT_LIST_DIR}/fault_injection.cc
  ${CMAKE_CURRENT_LIST_DIR}/io_uring_file.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_admission.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_format.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_index.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_tier.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_tier_open.cc
  ${CMAKE_CURRENT_LIST_DIR}/ssd_tier_reclaim.cc)
target_link_libraries(ac_storage_ssd PUBLIC ac_common ac_container PkgConfig::URING RocksDB::rocksdb spdlog::spdlog
  absl::flat_hash_map absl::flat_hash_set absl::str_format Threads::Threads)
