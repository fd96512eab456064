/** WGSL helpers shared by the forward and backward programs (one definition of the softcap's tanh for both). */

export const STABLE_TANH_WGSL = `
fn stableTanh(x: f32) -> f32 {
  // tanh through exp(-2|x|): never overflows (the textbook (e^2x - 1) / (e^2x + 1) is NaN for large x), and keeps
  // NaN a NaN (a clamped builtin tanh may not). Below |x| = 1/8, 1 - exp(-2|x|) cancels (NVIDIA's exp is a few ulp:
  // 2e-5 relative at |x| = 0.013, found by the H200 fuzz), so there tanh's odd series to x^7 (error < 2e-10) is used.
  let a = abs(x);
  let t = exp(-2.0 * a);
  let x2 = x * x;
  let series = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  return select(sign(x) * (1.0 - t) / (1.0 + t), series, a < 0.125);
}
`;
