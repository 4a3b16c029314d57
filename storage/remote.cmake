# Remote tier: containers shared through Redis Cluster over hiredis (storage/remote_tier.h).
if(TARGET ac_storage_remote)
  return()
endif()
add_library(ac_storage_remote
  ${CMAKE_CURRENT_LIST_DIR}/redis_cluster.cc
  ${CMAKE_CURRENT_LIST_DIR}/remote_tier.cc)
target_link_libraries(ac_storage_remote
  PUBLIC ac_common ac_container absl::status absl::statusor absl::flat_hash_map
  PRIVATE PkgConfig::HIREDIS absl::strings absl::str_format spdlog::spdlog Threads::Threads)
