# Issue-15 crash campaigns: kill -9 rounds against a real adaptcached during durable Puts,
# Deletes, SSD reclaim, mover transcodes and recovery (bench/scripts/80_reliability.sh).
if(ADAPTCACHE_BENCH AND TARGET adaptcached AND TARGET ac_kernels AND TARGET PkgConfig::HTTPLIB)
  add_executable(reliability_campaign ${CMAKE_CURRENT_LIST_DIR}/reliability_campaign.cc)
  target_link_libraries(reliability_campaign PRIVATE ac_proto ac_kernels ac_common gRPC::grpc++ PkgConfig::HTTPLIB
                        Threads::Threads)
  target_compile_definitions(reliability_campaign PRIVATE ADAPTCACHE_DEFAULT_BIN_DIR="${CMAKE_BINARY_DIR}/bin")
  add_dependencies(reliability_campaign adaptcached)
endif()
