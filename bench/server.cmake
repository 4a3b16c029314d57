# Server benchmark: metrics hot-path cost and /metrics render time vs stored entries.
if(TARGET ac_server)
  add_executable(server_bench ${CMAKE_CURRENT_LIST_DIR}/server_bench.cc)
  target_link_libraries(server_bench PRIVATE ac_server)
endif()
