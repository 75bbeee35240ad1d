// VDIT_HOST_DEVICE marks small functions shared by the CPU ops and the CUDA kernels.
#pragma once

#ifdef __CUDACC__
#define VDIT_HOST_DEVICE __host__ __device__
#else
#define VDIT_HOST_DEVICE
#endif
