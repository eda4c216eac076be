# Sourced by the GPU scripts (gpu-check.sh, gpu-speed.sh): prints the GPU, and where the dynamic
# linker does not already know cuBLAS, finds the CUDA runtime libraries the built-in trainer
# opens at run time (libcudart, cuBLAS, cuBLASLt, cuRAND, NVRTC: a CUDA toolkit, or PyTorch's
# nvidia-* wheels) and puts their folders on LD_LIBRARY_PATH.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if ! ldconfig -p | grep -q 'libcublas\.so'; then
  dirs=$(find /usr/local /opt /usr/lib -xdev \( -name 'libcudart.so.*' -o -name 'libcublas.so.*' -o -name 'libcublasLt.so.*' \
    -o -name 'libcurand.so.*' -o -name 'libnvrtc.so.*' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
  echo "CUDA libraries from: ${dirs:-nowhere (the built-in runs will fail)}"
  export LD_LIBRARY_PATH=${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
