# Remote (Redis Cluster) tier tests. ac_test_redis_cluster is a harness that runs a real
# Redis Cluster on loopback (redis-server/redis-cli from PATH; tests skip without them).
if(TARGET ac_test_redis_cluster OR ADAPTCACHE_FUZZ)
  return()
endif()
add_library(ac_test_redis_cluster STATIC ${CMAKE_SOURCE_DIR}/tests/testing/redis_cluster.cc)
target_link_libraries(ac_test_redis_cluster PUBLIC absl::status absl::statusor absl::strings)
ac_unit_test(redis_cluster_harness_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_cluster_harness_test.cc LIBS ac_test_redis_cluster)
if(TARGET ac_storage_remote AND TARGET ac_kernels)
  ac_unit_test(remote_tier_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/remote_tier_test.cc
               LIBS ac_test_redis_cluster ac_storage_remote ac_kernels)
endif()
