# Issue-16 benchmark: the remote (Redis Cluster) tier against the SSD tier and a plain
# hiredis client (bench/scripts/65_remote.sh runs it).
if(TARGET ac_client AND TARGET PkgConfig::HIREDIS AND NOT TARGET remote_bench)
  add_executable(remote_bench ${CMAKE_CURRENT_LIST_DIR}/remote_bench.cc)
  target_include_directories(remote_bench PRIVATE ${CLI11_INCLUDE_DIR})
  target_link_libraries(remote_bench PRIVATE ac_client PkgConfig::HIREDIS)
endif()
