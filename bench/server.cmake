# Server benchmark: metrics hot-path cost and /metrics render time vs stored entries.
if(TARGET ac_server)
  add_executable(server_bench ${CMAKE_CURRENT_LIST_DIR}/server_bench.cc)
  target_link_libraries(server_bench PRIVATE ac_server)
endif()

# Overload: 1000 clients (100 hostile) against a real adaptcached it starts.
if(TARGET ac_client AND TARGET adaptcached)
  add_executable(overload_bench ${CMAKE_CURRENT_LIST_DIR}/overload_bench.cc)
  target_link_libraries(overload_bench PRIVATE ac_client ac_proto gRPC::grpc++ absl::strings Threads::Threads)
  add_dependencies(overload_bench adaptcached)
endif()
