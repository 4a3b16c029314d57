# Tier manager: DRAM + SSD placement, demotion, promotion, mover primitives
# (storage/tier_manager.h).
if(TARGET ac_storage_tiering OR NOT TARGET ac_storage_dram OR NOT TARGET ac_storage_ssd
   OR NOT TARGET ac_storage_remote)
  return()
endif()
add_library(ac_storage_tiering
  ${CMAKE_CURRENT_LIST_DIR}/tier_manager.cc
  ${CMAKE_CURRENT_LIST_DIR}/tier_manager_mover.cc)
target_link_libraries(ac_storage_tiering
  PUBLIC ac_storage_dram ac_storage_ssd ac_storage_remote ac_common ac_container absl::status absl::statusor
         absl::flat_hash_map absl::flat_hash_set
  PRIVATE absl::strings absl::hash spdlog::spdlog Threads::Threads)
