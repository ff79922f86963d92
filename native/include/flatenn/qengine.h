// Int4 inference kernels for the fault-campaign engine (DESIGN §1-§2). No Node headers.
//
// GEMM contract (integer part exact on every ISA):
//   acc[m][n] = sum_k A[m][k] * W[n][k]          A: uint8 codes, W: signed codes, int32
// with a fused epilogue, per output element, in float64 after the exact accumulator
// (native/kernels/qrequant.h; every step one IEEE operation, so every ISA gives the same bits):
//   Int32 : the accumulator itself
//   Float : y = fl(fl(scale[n] * double(acc)) + bias[n])  (two roundings, never fused into an
//           FMA), stored as float(y)
//   Codes : q = min(round_half_even(max(fl(y * inv), 0)), levels) as uint8, inv = fl(1 / actScale)
//           (NaN -> 0). Float64 keeps the codes those of exact arithmetic except within ~1e-15
//           (relative) of a rounding boundary: the engine agrees with a float64 evaluation of the
//           same model (PyTorch's included), DESIGN §1.
// |acc| stays below 2^31 for K <= 65536 (255 * 128 * 65536 < 2^31).
//
// Data layouts:
//   Weights: b-bit packed [N][K] (DESIGN §2) are repacked once per trial, after faults, into a
//   QwHeader + the layout of one ISA (`qweights_repack`). Padding (n >= N, k >= K) holds zeros.
//     scalar : int8  [N][Kp]
//     avx2   : int8  [Np/4][Kp/4][4 channels][4 k]   (a dword = 4 consecutive k = one vpmaddubsw pair of pairs)
//     avx512 : int8  [Np/8][Kp/4][8 channels][4 k]   (a dword = 4 consecutive k = one vpdpbusd lane)
//   Kp = K rounded up to 4, Np = N rounded up to the channel block.
//   Activations are packed into panels of kPanel = 48 rows (the last panel 16, 32 or 48 wide):
//   panel p holds rows [48p, 48p + Wp) as uint8 [Kp/4][Wp][4 k], at byte offset 48 * p * Kp.
//   Rows are padded to a multiple of 16 with zeros.
//
// Output addressing: element (m, n) lives at
//   data[(m / P) * strideImg + (m % P) * strideP + n * strideN]
// e.g. conv over G images of P = OH*OW pixels: (P, O*P, 1, P) gives NCHW; a plain [M][N]
// row-major matrix: (M, 0, N, 1); [N][M]: (M, 0, 1, M).
//
// Two ways to run a layer (QConvPath; same bits either way):
//   Gemm   : im2col (convolutions) + packed panels + the panel kernels above; every ISA.
//   Direct : qconv_direct.cc, weights in the AVX-512 VNNI layout, or in the AVX2 layout with codes in
//            [-8, 7] (vpmaddubsw int16 runs: qgemm_avx2_run): 16 images in the vector lanes, so every
//            operand is one aligned load whatever the spatial shape; small convolutions (LeNet's
//            K = 25 / 150, 6 / 16 channels), dense row-major GEMMs (as 1 x 1 convolutions), a max
//            pool fused into its convolution, and the blocked activation layout (QBlocked) that
//            lets a chain of such layers skip the transposes between them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "flatenn/core.h"

namespace fl {

constexpr uint32_t kQwMagic = 0x57514C46u;  // "FLQW"
constexpr size_t kQwHeaderBytes = 64;
constexpr size_t kPanel = 48;  // activation rows per panel

struct QwHeader {
  uint32_t magic;   // kQwMagic
  uint32_t isa;     // Isa whose layout follows
  uint32_t N, K;    // logical shape [N][K]
  uint32_t Np, Kp;  // padded shape
  uint32_t bits;    // width of the codes it was made from (informational)
  int32_t wlo, whi; // least and greatest weight code (the AVX2 kernel's choice, qgemm_avx2_run)
  uint32_t reserved[7];
};
static_assert(sizeof(QwHeader) == kQwHeaderBytes, "QwHeader must be 64 bytes");

// The ISA qgemm runs at now: current_isa(), except AVX-512 without VNNI runs the AVX2 kernel.
Isa qgemm_isa();
// Runs `iters` rounds of 24 independent AVX-512 VNNI vpdpbusd chains (no memory traffic) and
// returns the multiply-accumulates done (64 per instruction); 0 without AVX-512 VNNI.
double qgemm_peak_probe(uint64_t iters);
// Channel block of an ISA's weight layout (1, 4, 8).
size_t qweights_block(Isa isa);
// Bytes of a repacked weight buffer, enough for the layout of any ISA.
size_t qweights_bytes(size_t N, size_t K);
// codes: [N][K] int8 -> dst (qweights_bytes(N, K) bytes), layout of `isa`.
void qweights_from_codes(const int8_t* codes, size_t N, size_t K, int bits, Isa isa, uint8_t* dst);
// packed: b-bit codes [N][K] (DESIGN §2, from bit 0 of packed[0]) -> dst, layout of `isa`.
void qweights_repack(const uint8_t* packed, int bits, size_t N, size_t K, Isa isa, uint8_t* dst);
// nullptr if buf (bytes long) is a valid repacked buffer of shape [N][K] whose ISA this CPU runs,
// else a message saying what is wrong.
const char* qweights_check(const uint8_t* buf, size_t bytes, size_t N, size_t K);

enum class QOutMode : int { Int32 = 0, Float = 1, Codes = 2 };

struct QOut {
  QOutMode mode;
  void* data;  // int32_t / float / uint8_t
  int64_t P, strideImg, strideP, strideN;
  const double* scale;  // [N] (Float, Codes)
  const double* bias;   // [N] (Float, Codes)
  double actScale;      // Codes (inv = fl(1 / actScale))
  double levels;        // Codes: 2^bits - 1
  const double* corr = nullptr;  // optional [N][P] (Float, Codes; conv drivers, GEMM and direct paths): a per-position
                                 // term added after the affine, y = fl(fl(fl(scale * acc) + bias) + corr[n * P + p]),
                                 // p = m % P (the input layer's border correction, DESIGN §1)
  int32_t aMax = 255;       // an upper bound of the activation codes A (the drivers set it per task from a scan of
                            // that task's operands; it picks an AVX2 kernel, never changes a bit)
};

// The AVX2 kernel by operand range. vpmaddubsw (u8 x s8) sums pairs a0*w0 + a1*w1 into int16
// with saturation; with activations in [0, aMax] and weights in [wlo, whi] every pair lies in
// [2 aMax wlo, 2 aMax whi], so for
//   n = min(floor(32768 / (2 aMax max(-wlo, 0))), floor(32767 / (2 aMax max(whi, 0))))   (>= 1)
// n pair sums added with wrapping vpaddw never leave int16 (nor saturate), and the kernel sums n
// k-steps of 4 in 16 bits before widening with vpmaddwd (exact). 4-bit codes x 4-bit weights
// (aMax 15, [-8, 7]): n = 136; raw uint8 x 4-bit weights: n = 8; 4-bit codes x 8-bit weights
// ([-128, 127]): n = 8. Where n would be 0 (uint8 x 8-bit weights) the widening kernel runs
// (u8 and s8 to int16, vpmaddwd). Returns n, or 0 for the widening kernel.
int qgemm_avx2_run(int aMax, int wlo, int whi);
// max over n bytes (0 for n = 0).
uint8_t max_u8(const uint8_t* x, size_t n);

// Bytes of the packed activation panels for M rows of K.
size_t qpanels_bytes(size_t M, size_t K);
// A: [M][K] row-major with row stride lda -> panels.
void qpack_rows(const uint8_t* A, size_t M, size_t K, size_t lda, uint8_t* panels);
// x: [G][C][H][W] uint8 -> panels of the im2col matrix [G*OH*OW][C*kh*kw] (k = (c, i, j) row-major,
// zero padding); scratch: qim2col_scratch_bytes(...) bytes.
size_t qim2col_scratch_bytes(size_t G, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad);
void qim2col(const uint8_t* x, size_t G, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
             uint8_t* panels, uint8_t* scratch);

// One panel (rows [m0, m0 + Wp) with M the total row count) times channels [n0, n1) (n0, n1
// multiples of the weight layout's block, n1 may be Np), with the epilogue. Adds zero codes to *zeros.
using QPanelFn = void (*)(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                          size_t n0, size_t n1, const QOut& o, int64_t* zeros);
namespace kern {
extern Kernel<QPanelFn> u8s8_qgemm_panel;  // avx512 variant uses AVX-512 VNNI
}

// Serial GEMM over packed panels with the weights' ISA; returns the zero codes written (Codes mode).
int64_t qgemm_panels(const uint8_t* panels, size_t M, const uint8_t* qw, const QOut& o);
// Blocked layout ("images in lanes"): a batch of B items of E elements each stored as
// [ceil(B / 16)][E][16], element e of item b at ((b / 16) * E + e) * 16 + b % 16 (4-byte elements
// for Int32 / Float outputs). Lanes past B in the last block: unspecified on output, never read
// into lanes below B on input. The direct kernel reads and writes it without transposing, so a
// chain of layers on the direct kernel keeps its activations blocked; other paths convert.
struct QBlocked {
  bool in = false;   // the input activations are blocked
  bool out = false;  // write the output blocked
};
inline size_t qblocked_items(size_t B) { return (B + 15) / 16 * 16; }
// [B][E] rows <-> blocked (elem = 1 or 4 bytes); qblock zeroes the lanes past B.
void qblock(const void* rows, size_t B, size_t E, size_t elem, void* blocked);
void qunblock(const void* blocked, size_t B, size_t E, size_t elem, void* rows);

// Paths of the GEMM and convolution drivers: packed panels + GEMM (im2col for convolutions; every
// ISA), or the direct kernel of qconv_direct.cc (AVX-512 VNNI, or AVX2 for weights in [-8, 7]; 16
// images in the vector lanes, fused max pool). Auto takes the direct kernel wherever it applies.
// Every path gives the same bits.
enum class QConvPath : int { Auto = 0, Gemm = 1, Direct = 2 };
// Parallel drivers (any thread count gives the same bits). qw must pass qweights_check.
// Dense rows (lda == K) into a row-major [M][N] output run as a 1 x 1 convolution on the direct
// kernel where it applies (path Auto or Direct).
// bl: blocked A (then lda == K) and / or output (then o's P and strides are not used).
int64_t qgemm_u8s8(const uint8_t* A, size_t M, size_t K, size_t lda, const uint8_t* qw, const QOut& o,
                   QConvPath path = QConvPath::Auto, QBlocked bl = {});
// x: [B][C][H][W] uint8 codes, weights [O][C][kh][kw] repacked as [O][C*kh*kw];
// out: [B][O][OH][OW] (o.P etc. are set here). Returns the zero codes (Codes mode).
// Direct is taken only where it applies (else the GEMM path runs).
int64_t qconv2d_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                   size_t stride, size_t pad, QOut o, QConvPath path = QConvPath::Auto, QBlocked bl = {});
// o.corr (per-position term) is taken on both paths (the direct kernel pools over y when it is set).
// Convolution + ReLU/requantise (o.mode must be Codes) + max pool over poolK x poolK windows with
// stride poolStride (no padding): out [B][O][PH][PW], PH = (OH - poolK) / poolStride + 1.
// Returns the zero codes of the convolution output before pooling (what sparsity counts), so
// the result equals qconv2d_u8 followed by maxpool2d_u8 exactly.
int64_t qconv2d_pool_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                        size_t stride, size_t pad, size_t poolK, size_t poolStride, QOut o,
                        QConvPath path = QConvPath::Auto, QBlocked bl = {});
// Whether the direct kernel can run this convolution (weights in the AVX-512 VNNI layout on a
// CPU with VNNI, or in the AVX2 layout with codes in [-8, 7]; pooling only with codes, windows
// that tile the output, buffers of reasonable size).
bool qconv_direct_applies(const uint8_t* qw, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
                          size_t poolK, size_t poolStride, QOutMode mode);
// Whether qconv2d_u8 / qconv2d_pool_u8 (path Auto) run this convolution on the direct kernel, or, with
// dense, whether qgemm_u8s8 runs a dense [M][C] x [N][C] GEMM there: a caller keeps activations in
// the blocked layout only between layers that do (other paths convert around themselves).
bool qconv_runs_direct(const uint8_t* qw, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
                       size_t poolK, size_t poolStride, QOutMode mode, bool dense);
// The direct kernel itself (poolK = 1: no pooling); out [B][O][PH][PW] in o.data (o.P etc. unused),
// input and output plain or blocked.
int64_t qconv2d_direct_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                          size_t stride, size_t pad, size_t poolK, size_t poolStride, QOut o, bool inBlocked = false,
                          bool outBlocked = false);
inline size_t conv_out(size_t in, size_t k, size_t stride, size_t pad) { return (in + 2 * pad - k) / stride + 1; }

// ---- simple ops on codes ----------------------------------------------------
// x: [planes][H][W] uint8 -> y: [planes][OH][OW], max over k x k windows, no padding.
void maxpool2d_u8(const uint8_t* x, size_t planes, size_t H, size_t W, size_t k, size_t stride, uint8_t* y);
// The same on blocked [B][C][H][W] -> blocked [B][C][OH][OW] (16 images per vector).
void maxpool2d_u8_blocked(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, size_t k, size_t stride, uint8_t* y);
// x: [planes][HW] uint8 -> sums: [planes] int32 (exact).
void global_sum_u8(const uint8_t* x, size_t planes, size_t HW, int32_t* sums);
// ReLU + requantise float64 values: q = min(rhe(max(fl(y * inv), 0)), levels). Returns zero codes.
int64_t requant_u8(const double* y, size_t n, double actScale, double levels, uint8_t* q);
// One input of a residual join: uint8 codes (acc == nullptr), dequantised as fl(double(code) * s),
// or int32 accumulators of a layer (codes == nullptr) with its epilogue
// y = fl(fl(scale[c] * double(acc)) + bias[c]), c = (i / P) % C.
struct QJoinIn {
  const uint8_t* codes;
  const int32_t* acc;
  double s;
  const double* scale;
  const double* bias;
};
// Residual join over planes [B*C][P]: y = fl(a + b), then ReLU + requantise as requant_u8.
// Returns zero codes.
int64_t add_requant(const QJoinIn& a, const QJoinIn& b, size_t planes, size_t C, size_t P, double actScale, double levels,
                    uint8_t* q);
// The input layer with one integer accumulator per channel group (a per-channel std): acc holds G
// arrays of [B][O][P] int32 one after another; y = fl(fl(gscale[0][o] * acc_0) + bias[o]), then
// y = fl(y + fl(gscale[g][o] * acc_g)) for g = 1 .. G-1 in order, then y = fl(y + corr[o][p])
// (corr may be null); Float (float(y)) or Codes out [B][O][P]. Returns zero codes.
int64_t qgroups_epilogue(const int32_t* acc, size_t G, size_t B, size_t O, size_t P, const double* gscale, const double* bias,
                         const double* corr, QOutMode mode, void* out, double actScale, double levels);
// Linear layer on int32 activations (e.g. after global_sum_u8), plain [N][K] int8 codes:
// acc (int64, exact) then the Float / Codes epilogue; out row-major [M][N]. Returns zero codes.
int64_t qlinear_i32(const int32_t* A, size_t M, size_t K, const int8_t* W, size_t N, const double* scale, const double* bias,
                    QOutMode mode, void* out, double actScale, double levels);

}  // namespace fl
