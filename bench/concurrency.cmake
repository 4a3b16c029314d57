# Issue-17 item 3: Lookup / shm Get / Put throughput against 1..16 client threads.
if(TARGET ac_client)
  add_executable(concurrency_bench ${CMAKE_CURRENT_LIST_DIR}/concurrency_bench.cc)
  target_include_directories(concurrency_bench PRIVATE ${CLI11_INCLUDE_DIR})
  target_link_libraries(concurrency_bench PRIVATE ac_client Threads::Threads)
endif()
