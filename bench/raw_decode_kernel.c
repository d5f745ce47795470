/* bench.node --decoders only: the libbitcoinkernel variant of app/btc/raw_decode.c's per-block loop, appended
 * to that file's source when bench/node.py builds it (it uses its mq_columns, first_tx, reverse32 and
 * put_outputs). libbitcoinkernel is Bitcoin Core's btck_ C API, the py-bitcoinkernel wheel's .so, loaded with
 * dlopen (the wheel ships no C header; the prototypes are the library's documented ones). */
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
