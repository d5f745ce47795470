/* Raw-block decoding for bench/node.py's --decoders: one call per block fills the columns the loader
 * writes (raw.btc_tx_raw's txid, size, weight, coinbase/segwit flags, input/output counts, output sums,
 * utxo_output_* of Core's IsUnspendable rule) and the block's spent outpoints, looping over the block's
 * transactions in C. The decoding is the libraries': libwally-core (the wallycore wheel's extension
 * exports its C API) and libbitcoinkernel (Bitcoin Core's btck_ C API, the py-bitcoinkernel wheel's .so),
 * both loaded with dlopen because neither wheel ships its C header; the prototypes below are the
 * libraries' documented ones. Built by bench/node.py with cffi. */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

struct wally_tx;
static int (*w_from_bytes)(const unsigned char *, size_t, uint32_t, struct wally_tx **);
static int (*w_free)(struct wally_tx *);
static int (*w_length)(const struct wally_tx *, uint32_t, size_t *);
static int (*w_weight)(const struct wally_tx *, size_t *);
static int (*w_txid)(const struct wally_tx *, unsigned char *, size_t);
static int (*w_num_in)(const struct wally_tx *, size_t *);
static int (*w_num_out)(const struct wally_tx *, size_t *);
static int (*w_is_coinbase)(const struct wally_tx *, size_t *);
static int (*w_witness_count)(const struct wally_tx *, size_t *);
static int (*w_out_sat)(const struct wally_tx *, size_t, uint64_t *);
static int (*w_out_script_len)(const struct wally_tx *, size_t, size_t *);
static int (*w_out_script)(const struct wally_tx *, size_t, unsigned char *, size_t, size_t *);
static int (*w_in_txhash)(const struct wally_tx *, size_t, unsigned char *, size_t);
static int (*w_in_index)(const struct wally_tx *, size_t, size_t *);
#define WALLY_TX_FLAG_USE_WITNESS 0x1

typedef int (*btck_write)(const void *, size_t, void *);
static void *(*k_block_create)(const void *, size_t);
static void (*k_block_destroy)(void *);
static size_t (*k_count_tx)(const void *);
static const void *(*k_tx_at)(const void *, size_t);
static const void *(*k_tx_txid)(const void *);
static void (*k_txid_bytes)(const void *, unsigned char *);
static size_t (*k_count_in)(const void *);
static size_t (*k_count_out)(const void *);
static const void *(*k_out_at)(const void *, size_t);
static int64_t (*k_out_amount)(const void *);
static const void *(*k_out_spk)(const void *);
static int (*k_spk_bytes)(const void *, btck_write, void *);
static const void *(*k_in_at)(const void *, size_t);
static const void *(*k_in_outpoint)(const void *);
static uint32_t (*k_op_index)(const void *);
static const void *(*k_op_txid)(const void *);
static int (*k_tx_bytes)(const void *, btck_write, void *);

#define SYM(lib, var, name) \
    if (!(*(void **)&var = dlsym(lib, name))) \
        return -2;

int mq_init_wally(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    int (*init)(uint32_t);
    if (!lib)
        return -1;
    SYM(lib, init, "wally_init");
    SYM(lib, w_from_bytes, "wally_tx_from_bytes");
    SYM(lib, w_free, "wally_tx_free");
    SYM(lib, w_length, "wally_tx_get_length");
    SYM(lib, w_weight, "wally_tx_get_weight");
    SYM(lib, w_txid, "wally_tx_get_txid");
    SYM(lib, w_num_in, "wally_tx_get_num_inputs");
    SYM(lib, w_num_out, "wally_tx_get_num_outputs");
    SYM(lib, w_is_coinbase, "wally_tx_is_coinbase");
    SYM(lib, w_witness_count, "wally_tx_get_witness_count");
    SYM(lib, w_out_sat, "wally_tx_get_output_satoshi");
    SYM(lib, w_out_script_len, "wally_tx_get_output_script_len");
    SYM(lib, w_out_script, "wally_tx_get_output_script");
    SYM(lib, w_in_txhash, "wally_tx_get_input_txhash");
    SYM(lib, w_in_index, "wally_tx_get_input_index");
    return init(0);
}

int mq_init_kernel(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!lib)
        return -1;
    SYM(lib, k_block_create, "btck_block_create");
    SYM(lib, k_block_destroy, "btck_block_destroy");
    SYM(lib, k_count_tx, "btck_block_count_transactions");
    SYM(lib, k_tx_at, "btck_block_get_transaction_at");
    SYM(lib, k_tx_txid, "btck_transaction_get_txid");
    SYM(lib, k_txid_bytes, "btck_txid_to_bytes");
    SYM(lib, k_count_in, "btck_transaction_count_inputs");
    SYM(lib, k_count_out, "btck_transaction_count_outputs");
    SYM(lib, k_out_at, "btck_transaction_get_output_at");
    SYM(lib, k_out_amount, "btck_transaction_output_get_amount");
    SYM(lib, k_out_spk, "btck_transaction_output_get_script_pubkey");
    SYM(lib, k_spk_bytes, "btck_script_pubkey_to_bytes");
    SYM(lib, k_in_at, "btck_transaction_get_input_at");
    SYM(lib, k_in_outpoint, "btck_transaction_input_get_out_point");
    SYM(lib, k_op_index, "btck_transaction_out_point_get_index");
    SYM(lib, k_op_txid, "btck_transaction_out_point_get_txid");
    SYM(lib, k_tx_bytes, "btck_transaction_to_bytes");
    return 0;
}

typedef struct {
    unsigned char *txid; /* 32 bytes per tx, in getblock's (display) byte order, as raw.btc_tx_raw stores it */
    uint32_t *size, *weight, *n_in, *n_out, *utxo_count;
    int64_t *out_value, *utxo_value, *utxo_script_bytes;
    uint8_t *coinbase, *segwit;
    unsigned char *prev_txid; /* 32 bytes per spent outpoint, internal byte order */
    uint32_t *prev_vout, *prev_tx; /* output index; index in the block of the spending tx */
    size_t max_tx, max_in, n_tx, n_spent;
} mq_columns;

#define MAX_SCRIPT_SIZE 10000 /* Core's: a longer script is unspendable */
#define OP_RETURN 0x6a

static void reverse32(unsigned char *h)
{
    for (int i = 0; i < 16; i++) {
        unsigned char t = h[i];
        h[i] = h[31 - i];
        h[31 - i] = t;
    }
}

/* The block's transaction count (a CompactSize after the 80-byte header): where the first tx starts. */
static const unsigned char *first_tx(const unsigned char *raw, size_t len, uint64_t *n)
{
    const unsigned char *p = raw + 80;
    if (len < 81)
        return NULL;
    if (*p < 0xfd) {
        *n = *p;
        return p + 1;
    }
    if (*p == 0xfd && len >= 83) {
        *n = p[1] | (p[2] << 8);
        return p + 3;
    }
    if (*p == 0xfe && len >= 85) {
        *n = p[1] | (p[2] << 8) | (p[3] << 16) | ((uint64_t)p[4] << 24);
        return p + 5;
    }
    return NULL;
}

static void put_outputs(mq_columns *c, size_t t, uint64_t total, uint64_t count, uint64_t value, uint64_t bytes)
{
    c->out_value[t] = total, c->utxo_count[t] = count, c->utxo_value[t] = value, c->utxo_script_bytes[t] = bytes;
}

/* libwally-core only: each tx parsed by wally_tx_from_bytes where the previous one ended. 0 or < 0. */
int mq_decode_wally(const unsigned char *raw, size_t len, mq_columns *c)
{
    unsigned char script[MAX_SCRIPT_SIZE]; /* on the stack: callers may decode in several threads */
    const unsigned char *end = raw + len, *p;
    uint64_t n;
    c->n_tx = c->n_spent = 0;
    if (!(p = first_tx(raw, len, &n)))
        return -1;
    if (n > c->max_tx)
        return -3;
    for (size_t t = 0; t < n; t++) {
        struct wally_tx *tx;
        size_t size, weight, nin, nout, cb, wc, slen, written, idx;
        uint64_t sat, total = 0, utxo_value = 0, utxo_bytes = 0, utxo_count = 0;
        if (w_from_bytes(p, end - p, 0, &tx))
            return -1;
        if (w_length(tx, WALLY_TX_FLAG_USE_WITNESS, &size) || w_weight(tx, &weight) || w_num_in(tx, &nin)
            || w_num_out(tx, &nout) || w_is_coinbase(tx, &cb) || w_witness_count(tx, &wc)
            || w_txid(tx, c->txid + 32 * t, 32) || (!cb && c->n_spent + nin > c->max_in)) {
            w_free(tx);
            return -1;
        }
        reverse32(c->txid + 32 * t);
        for (size_t o = 0; o < nout; o++) {
            w_out_sat(tx, o, &sat);
            w_out_script_len(tx, o, &slen);
            total += sat;
            if (slen > MAX_SCRIPT_SIZE)
                continue;
            if (slen) {
                w_out_script(tx, o, script, sizeof script, &written);
                if (script[0] == OP_RETURN)
                    continue;
            }
            utxo_count++, utxo_value += sat, utxo_bytes += slen;
        }
        for (size_t i = 0; !cb && i < nin; i++, c->n_spent++) {
            w_in_txhash(tx, i, c->prev_txid + 32 * c->n_spent, 32);
            w_in_index(tx, i, &idx);
            c->prev_vout[c->n_spent] = (uint32_t)idx, c->prev_tx[c->n_spent] = (uint32_t)t;
        }
        c->size[t] = size, c->weight[t] = weight, c->n_in[t] = nin, c->n_out[t] = nout;
        c->coinbase[t] = cb, c->segwit[t] = wc > 0;
        put_outputs(c, t, total, utxo_count, utxo_value, utxo_bytes);
        w_free(tx);
        p += size;
    }
    c->n_tx = n;
    return p == end ? 0 : -1;
}

typedef struct {
    size_t len;
    int first;
} captured;

static int capture(const void *bytes, size_t size, void *user)
{
    captured *k = user;
    if (k->first < 0 && size)
        k->first = ((const unsigned char *)bytes)[0];
    k->len += size;
    return 0;
}

/* libbitcoinkernel: btck_block_create parses the block (Core's own deserialiser). Its C API has no weight
 * and no witness accessor: with_wally also parses each tx's bytes with libwally-core for weight and the
 * segwit flag (weight and segwit stay 0 without it). 0 or < 0. */
int mq_decode_kernel(const unsigned char *raw, size_t len, mq_columns *c, int with_wally)
{
    const unsigned char *p;
    uint64_t count;
    void *block;
    size_t n;
    c->n_tx = c->n_spent = 0;
    if (!(p = first_tx(raw, len, &count)) || !(block = k_block_create(raw, len)))
        return -1;
    n = k_count_tx(block);
    if (n > c->max_tx || n != count) {
        k_block_destroy(block);
        return -3;
    }
    for (size_t t = 0; t < n; t++) {
        const void *tx = k_tx_at(block, t);
        size_t nin = k_count_in(tx), nout = k_count_out(tx), weight = 0, wc = 0;
        uint64_t total = 0, utxo_value = 0, utxo_bytes = 0, utxo_count = 0;
        captured whole = {0, -1};
        k_txid_bytes(k_tx_txid(tx), c->txid + 32 * t);
        reverse32(c->txid + 32 * t);
        for (size_t o = 0; o < nout; o++) {
            const void *out = k_out_at(tx, o);
            int64_t sat = k_out_amount(out);
            captured s = {0, -1};
            k_spk_bytes(k_out_spk(out), capture, &s);
            total += sat;
            if (s.len > MAX_SCRIPT_SIZE || s.first == OP_RETURN)
                continue;
            utxo_count++, utxo_value += sat, utxo_bytes += s.len;
        }
        if (t && c->n_spent + nin > c->max_in) {
            k_block_destroy(block);
            return -3;
        }
        for (size_t i = 0; t && i < nin; i++, c->n_spent++) {
            const void *op = k_in_outpoint(k_in_at(tx, i));
            k_txid_bytes(k_op_txid(op), c->prev_txid + 32 * c->n_spent);
            c->prev_vout[c->n_spent] = k_op_index(op), c->prev_tx[c->n_spent] = (uint32_t)t;
        }
        k_tx_bytes(tx, capture, &whole);
        if (with_wally) {
            struct wally_tx *wtx;
            if (w_from_bytes(p, whole.len, 0, &wtx)) {
                k_block_destroy(block);
                return -1;
            }
            w_weight(wtx, &weight);
            w_witness_count(wtx, &wc);
            w_free(wtx);
        }
        p += whole.len;
        c->size[t] = whole.len, c->weight[t] = weight, c->n_in[t] = nin, c->n_out[t] = nout;
        c->coinbase[t] = t == 0, c->segwit[t] = wc > 0;
        put_outputs(c, t, total, utxo_count, utxo_value, utxo_bytes);
    }
    k_block_destroy(block);
    c->n_tx = n;
    return p == raw + len ? 0 : -1;
}
