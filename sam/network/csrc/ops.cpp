// Python bindings for the StyleGAN2 CUDA ops (see sam/ops.py for the PyTorch formulation they must match).
#include <torch/extension.h>

torch::Tensor upfirdn2d_cuda(const torch::Tensor& x, const torch::Tensor& kernel, int up, int down,
                             int pad_x0, int pad_x1, int pad_y0, int pad_y1);
torch::Tensor fused_bias_act_cuda(const torch::Tensor& x, const torch::Tensor& bias, double negative_slope,
                                  double scale);

static torch::Tensor upfirdn2d(const torch::Tensor& x, const torch::Tensor& kernel, int64_t up, int64_t down,
                               int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be on a CUDA device");  // the kernel is moved to x's device
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be NCHW");
  TORCH_CHECK(kernel.dim() == 2, "upfirdn2d: kernel must be 2-D");
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up and down must be >= 1");
  return upfirdn2d_cuda(x, kernel, (int)up, (int)down, (int)pad_x0, (int)pad_x1, (int)pad_y0, (int)pad_y1);
}

static torch::Tensor fused_bias_act(const torch::Tensor& x, const torch::Tensor& bias, double negative_slope,
                                    double scale) {
  TORCH_CHECK(x.is_cuda(), "fused_bias_act: x must be on a CUDA device");  // the bias is moved to x's device
  TORCH_CHECK(x.dim() >= 2 && bias.dim() == 1 && bias.size(0) == x.size(1), "fused_bias_act: bias must match dim 1");
  return fused_bias_act_cuda(x, bias, negative_slope, scale);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upsample, FIR filter, downsample (CUDA)");
  m.def("fused_bias_act", &fused_bias_act, "bias + leaky ReLU * scale (CUDA)");
}
