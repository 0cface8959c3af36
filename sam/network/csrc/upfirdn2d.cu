// upfirdn2d on CUDA: one thread per output pixel, a direct sum over the FIR taps that land on input samples.
// Same definition as upfirdn2d_torch in sam/ops.py: zero-insertion upsampling by `up`, padding (negative = crop),
// true convolution with `kernel`, keeping every `down`-th sample.
#include <ATen/AccumulateType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

namespace {

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ k,
                                 scalar_t* __restrict__ out, int planes, int in_h, int in_w, int out_h, int out_w,
                                 int kh, int kw, int up, int down, int pad_x0, int pad_y0) {
  using acc_t = at::acc_type<scalar_t, true>;
  const long long total = (long long)planes * out_h * out_w;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int ox = idx % out_w;
    const int oy = (idx / out_w) % out_h;
    const long long plane = idx / ((long long)out_w * out_h);
    const scalar_t* xp = x + plane * in_h * in_w;
    acc_t acc = 0;
    // Output (oy, ox) reads the padded, upsampled signal at rows oy*down + ty for taps ty = 0..kh-1 with the
    // flipped kernel; an upsampled row r (before padding: r - pad_y0) holds input row (r - pad_y0) / up when
    // divisible, zero otherwise.
    for (int ty = 0; ty < kh; ++ty) {
      const int uy = oy * down + ty - pad_y0;
      if (uy < 0 || uy % up != 0) continue;
      const int iy = uy / up;
      if (iy >= in_h) continue;
      for (int tx = 0; tx < kw; ++tx) {
        const int ux = ox * down + tx - pad_x0;
        if (ux < 0 || ux % up != 0) continue;
        const int ix = ux / up;
        if (ix >= in_w) continue;
        acc += static_cast<acc_t>(xp[iy * in_w + ix]) * static_cast<acc_t>(k[(kh - 1 - ty) * kw + (kw - 1 - tx)]);
      }
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

}  // namespace

torch::Tensor upfirdn2d_cuda(const torch::Tensor& x_in, const torch::Tensor& kernel_in, int up, int down,
                             int pad_x0, int pad_x1, int pad_y0, int pad_y1) {
  const at::cuda::OptionalCUDAGuard guard(x_in.device());
  auto x = x_in.contiguous();
  // the FIR taps may come from the CPU (e.g. make_kernel's output): moved to the input's device and dtype
  auto kernel = kernel_in.to(x.device(), x.scalar_type()).contiguous();
  const int n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int kh = kernel.size(0), kw = kernel.size(1);
  const int out_h = (in_h * up + pad_y0 + pad_y1 - kh + down) / down;
  const int out_w = (in_w * up + pad_x0 + pad_x1 - kw + down) / down;
  TORCH_CHECK(out_h > 0 && out_w > 0, "upfirdn2d: output would be empty");
  auto out = torch::empty({n, c, out_h, out_w}, x.options());
  const long long total = (long long)n * c * out_h * out_w;
  if (total == 0) return out;  // an empty batch (or no channels): launching 0 blocks is a CUDA error
  const int threads = 256;
  const int blocks = (int)std::min<long long>((total + threads - 1) / threads, 65535LL * 8);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "upfirdn2d_cuda",
                                  [&] {
    upfirdn2d_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n * c, in_h, in_w, out_h,
        out_w, kh, kw, up, down, pad_x0, pad_y0);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
