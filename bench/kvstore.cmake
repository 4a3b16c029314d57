# Issue-2 benchmark: adaptcached (gRPC bytes and shared memory) vs Redis, Lookup latency.
if(TARGET ac_client)
  add_executable(kvstore_bench ${CMAKE_CURRENT_LIST_DIR}/kvstore_bench.cc)
  target_include_directories(kvstore_bench PRIVATE ${CLI11_INCLUDE_DIR})
  target_link_libraries(kvstore_bench PRIVATE ac_client)
endif()
