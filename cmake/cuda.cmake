# CUDA is optional. VDIT_CUDA=AUTO turns it on when nvcc is found.
set(VDIT_WITH_CUDA OFF)
if(NOT VDIT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(VDIT_WITH_CUDA ON)
  elseif(VDIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "VDIT_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()

if(VDIT_WITH_CUDA)
  # Targets are given as -gencode flags: sm_90a (wgmma, TMA) and sm_80 (mma.sync, portable).
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  # CMake 3.25 does not know nvcc 13's C++20 flag: tell it.
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  set(VDIT_CUDA_GENCODE "-gencode=arch=compute_90a,code=sm_90a;-gencode=arch=compute_80,code=sm_80"
      CACHE STRING "nvcc -gencode flags")
  message(STATUS "vdit: CUDA on (${CMAKE_CUDA_COMPILER_VERSION})")
else()
  message(STATUS "vdit: CUDA off")
endif()

function(vdit_setup_cuda_target target)
  target_compile_definitions(${target} PUBLIC VDIT_HAVE_CUDA=1)
  foreach(flag IN LISTS VDIT_CUDA_GENCODE ITEMS --expt-relaxed-constexpr -lineinfo)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${flag}>)
  endforeach()
  # Static cudart loads the driver at run time, so binaries start (and GPU tests skip) on machines
  # without one; driver entry points (TMA maps) go through cudaGetDriverEntryPoint for the same reason.
  target_link_libraries(${target} PUBLIC CUDA::cudart_static CUDA::cublasLt)
endfunction()
