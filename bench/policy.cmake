# Optimizer benchmark: re-plan time (full and incremental), memory per entry, policies compared.
add_executable(policy_bench ${CMAKE_CURRENT_LIST_DIR}/policy_bench.cc)
target_link_libraries(policy_bench PRIVATE ac_policy)
