# Evaluation harness (docs/evaluation.md): trace generator, simulation-mode replay of every
# policy, and (bench/eval/plot.py) curves and headline figures.
add_library(ac_eval STATIC ${CMAKE_CURRENT_LIST_DIR}/eval/trace.cc ${CMAKE_CURRENT_LIST_DIR}/eval/profile.cc
            ${CMAKE_CURRENT_LIST_DIR}/eval/sim.cc ${CMAKE_CURRENT_LIST_DIR}/eval/ground_truth.cc
            ${CMAKE_CURRENT_LIST_DIR}/eval/metrics.cc)
target_include_directories(ac_eval PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ac_eval PUBLIC ac_policy ac_kernels absl::strings absl::raw_hash_set)
add_executable(eval_tracegen ${CMAKE_CURRENT_LIST_DIR}/eval/tracegen_main.cc)
target_link_libraries(eval_tracegen PRIVATE ac_eval)
add_executable(eval_sim ${CMAKE_CURRENT_LIST_DIR}/eval/eval_main.cc ${CMAKE_CURRENT_LIST_DIR}/eval/gt_main.cc)
target_link_libraries(eval_sim PRIVATE ac_eval)
# Unit tests of the harness (built with the benchmarks; not part of the ASan build, which
# turns benchmarks off).
if(COMMAND ac_unit_test)
  include(GoogleTest)  # gtest_discover_tests needs the module in this directory scope
  ac_unit_test(eval_harness_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/eval/eval_test.cc LIBS ac_eval)
endif()
# Daemon-replay mode: replays traces against a real adaptcached per policy.
if(TARGET ac_client AND TARGET PkgConfig::HTTPLIB)
  add_executable(eval_replay ${CMAKE_CURRENT_LIST_DIR}/eval/replay_daemon.cc)
  target_link_libraries(eval_replay PRIVATE ac_eval ac_client PkgConfig::HTTPLIB)
endif()
