# GPU codec tests (decode vs the CPU reference, GPU encode byte-identical to the CPU
# encoder). Built when CUDA is on; they skip cleanly when no GPU is present. Sources are
# named *_tests.cc so the *_test.cc glob of this folder does not pick them up.
if(ADAPTCACHE_HAVE_CUDA AND TARGET ac_kernels_cuda)
  foreach(t cuda_decode_tests cuda_encode_tests cuda_verify_tests)
    ac_unit_test(kernels_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.cc LIBS ac_kernels_cuda)
    if(TARGET kernels_${t})
      target_compile_options(kernels_${t} PRIVATE -ffp-contract=off)
    endif()
  endforeach()
endif()
