/*
 * wire.c
 *		Tep's wire format: the JSON of an entry, a diff's payload and the
 *		size limit NOTIFY puts on it.  Pure encoding: no table, no state.
 *
 * A diff's seq is known only when its transaction commits (change.c), so a
 * diff is encoded at the statement as its text around the seq; the seq,
 * the stream's epoch and the signature are put in at commit.
 */
#include "presence.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

/* async.c's NOTIFY_PAYLOAD_MAX_LENGTH: payloads must be shorter. */
#define PRESENCE_NOTIFY_MAX_BYTES (BLCKSZ - NAMEDATALEN - 128)

/* The widest seq a payload may carry: PG_INT64_MAX has 19 digits. */
#define PRESENCE_SEQ_MAX_DIGITS 19

/*
 * What commit adds after a diff's last key: ,"epoch":"<16 hex>" and, with
 * presence.signing_key, ,"sig":"<64 hex>".  Counted always, so that whether
 * a row fits does not depend on the setting.
 */
#define PRESENCE_SIG_MEMBER_BYTES (strlen(",\"sig\":\"\"") + 2 * PG_SHA256_DIGEST_LENGTH)
#define PRESENCE_DIFF_TAIL_BYTES \
	(strlen(",\"epoch\":\"\"") + PRESENCE_EPOCH_CHARS + PRESENCE_SIG_MEMBER_BYTES)

static const char *const diff_kind_names[] = {"join", "leave", "status"};

static int	longest_diff_bytes(const PresenceEntry *entry);
static int	decimal_bytes(int64 n);

/*
 * Read a row of PRESENCE_ENTRY_COLUMNS into an entry; its meta is "{}"
 * where the installation is still at 1.0 (no eleventh column).
 */
void
presence_entry_from_tuple(PresenceEntry *entry, HeapTuple tuple,
						  TupleDesc tupdesc)
{
	bool		isnull;

#define TEXT_COLUMN(n) TextDatumGetCString(SPI_getbinval(tuple, tupdesc, n, &isnull))
	entry->worker_id = TEXT_COLUMN(1);
	entry->topic = TEXT_COLUMN(2);
	entry->fd = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	entry->principal_id = TEXT_COLUMN(4);
	entry->kind = TEXT_COLUMN(5);
	entry->agent_id = TEXT_COLUMN(6);
	entry->since_ts = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	entry->status_state = TEXT_COLUMN(8);
	entry->status_note = TEXT_COLUMN(9);
	entry->status_until = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 10,
													  &isnull));
	entry->meta = "{}";
	if (tupdesc->natts >= 11)
	{
		Jsonb	   *meta = DatumGetJsonbP(SPI_getbinval(tuple, tupdesc, 11,
														&isnull));

		entry->meta = JsonbToCString(NULL, &meta->root, VARSIZE(meta));
	}
#undef TEXT_COLUMN
}

/*
 * Append Tep's entry fields, topic through until_ts, in Tep's order.
 */
static void
append_entry_fields(StringInfo buf, const PresenceEntry *entry)
{
	appendStringInfoString(buf, "\"topic\":");
	escape_json(buf, entry->topic);
	appendStringInfoString(buf, ",\"principal\":");
	escape_json(buf, entry->principal_id);
	appendStringInfoString(buf, ",\"ekind\":");
	escape_json(buf, entry->kind);
	appendStringInfoString(buf, ",\"agent_id\":");
	escape_json(buf, entry->agent_id);
	appendStringInfo(buf, ",\"fd\":%d,\"since\":" INT64_FORMAT ",\"state\":",
					 entry->fd, entry->since_ts);
	escape_json(buf, entry->status_state);
	appendStringInfoString(buf, ",\"note\":");
	escape_json(buf, entry->status_note);
	appendStringInfo(buf, ",\"until_ts\":" INT64_FORMAT, entry->status_until);
}

/*
 * Append worker_id and then meta (1.1), which follow Tep's fields and seq.
 */
static void
append_worker_and_meta(StringInfo buf, const PresenceEntry *entry)
{
	appendStringInfoString(buf, ",\"worker_id\":");
	escape_json(buf, entry->worker_id);
	appendStringInfoString(buf, ",\"meta\":");
	appendStringInfoString(buf, entry->meta);
}

/*
 * Append one entry of a snapshot: Tep's fields, then worker_id and meta.
 */
void
presence_append_snapshot_entry(StringInfo buf, const PresenceEntry *entry)
{
	appendStringInfoChar(buf, '{');
	append_entry_fields(buf, entry);
	append_worker_and_meta(buf, entry);
	appendStringInfoChar(buf, '}');
}

static void
diff_too_long(int bytes)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("topic, principal_id, agent_id and note are too long for one presence diff"),
			 errdetail("The diff would take %d bytes; a NOTIFY payload must be shorter than %d bytes.",
					   bytes, PRESENCE_NOTIFY_MAX_BYTES)));
}

/*
 * Encode a diff without its seq into `buf`, as
 * <N>:presence:<topic>{"kind":...,"until_ts":...,"seq":|,"worker_id":...,
 * "meta":{...}}
 * (N counting characters); returns the offset of `|`, where the seq goes,
 * and sets *json_at to the offset of the JSON.  An ERROR if the payload
 * could not be carried with the widest seq and the commit's tail.
 */
int
presence_encode_diff(StringInfo buf, PresenceDiffKind kind,
					 const PresenceEntry *entry, int *json_at)
{
	int			start PG_USED_FOR_ASSERTS_ONLY = buf->len;
	int			dtopic_chars;
	int			seq_at;

	dtopic_chars = strlen(PRESENCE_DIFF_TOPIC_PREFIX) +
		pg_mbstrlen_with_len(entry->topic, strlen(entry->topic));
	appendStringInfo(buf, "%d:" PRESENCE_DIFF_TOPIC_PREFIX "%s",
					 dtopic_chars, entry->topic);
	*json_at = buf->len;
	appendStringInfo(buf, "{\"kind\":\"%s\",", diff_kind_names[kind]);
	append_entry_fields(buf, entry);
	appendStringInfoString(buf, ",\"seq\":");
	seq_at = buf->len;
	append_worker_and_meta(buf, entry);
	appendStringInfoChar(buf, '}');

	/*
	 * longest_diff_bytes, which the CHECK asks, counts this encoding without
	 * building it: in assert builds every diff checks that it counts exactly
	 * (for the status kind, the longest name).
	 */
	Assert(buf->len - start + PRESENCE_SEQ_MAX_DIGITS + PRESENCE_DIFF_TAIL_BYTES +
		   strlen(diff_kind_names[PRESENCE_DIFF_STATUS]) -
		   strlen(diff_kind_names[kind]) == longest_diff_bytes(entry));

	if (buf->len + PRESENCE_SEQ_MAX_DIGITS + PRESENCE_DIFF_TAIL_BYTES >=
		PRESENCE_NOTIFY_MAX_BYTES)
		diff_too_long(buf->len + PRESENCE_SEQ_MAX_DIGITS +
					  PRESENCE_DIFF_TAIL_BYTES);
	return seq_at;
}

/*
 * Sign the diff in `payload`, whose JSON starts at json_at: its JSON's
 * HMAC-SHA256 under `key` goes in as a last member, ,"sig":"<64 hex>".  A
 * verifier removes that member (the JSON's last 75 bytes but its closing
 * brace) and computes the HMAC of what is left.
 */
static void
sign_diff(StringInfo payload, int json_at, const char *key)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		hex[2 * PG_SHA256_DIGEST_LENGTH + 1];
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) payload->data + json_at,
					   payload->len - json_at) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
		elog(ERROR, "presence: could not sign a diff: %s",
			 ctx == NULL ? "out of memory" : pg_hmac_error(ctx));
	pg_hmac_free(ctx);

	hex[hex_encode((const char *) mac, sizeof(mac), hex)] = '\0';
	payload->data[--payload->len] = '\0';	/* reopen the object */
	appendStringInfo(payload, ",\"sig\":\"%s\"}", hex);
}

/*
 * The payload of a diff encoded by presence_encode_diff, into `payload`:
 * its seq put in, the stream's epoch added and, when signing_key is not
 * empty, its signature.
 */
void
presence_finish_diff(StringInfo payload, const char *text, int len,
					 int seq_at, int json_at, int64 seq, const char *epoch,
					 const char *signing_key)
{
	appendBinaryStringInfo(payload, text, seq_at);
	appendStringInfo(payload, INT64_FORMAT, seq);
	/* the rest but its closing brace */
	appendBinaryStringInfo(payload, text + seq_at, len - seq_at - 1);
	appendStringInfo(payload, ",\"epoch\":\"%s\"}", epoch);
	if (signing_key[0] != '\0')
		sign_diff(payload, json_at, signing_key);

	/* Every payload sent fits NOTIFY even with the widest seq and a sig. */
	Assert(payload->len + PRESENCE_SEQ_MAX_DIGITS - decimal_bytes(seq) +
		   (signing_key[0] != '\0' ? 0 : PRESENCE_SIG_MEMBER_BYTES) <
		   PRESENCE_NOTIFY_MAX_BYTES);
}

/* Bytes of a string once escaped by escape_json, quotes included. */
static int
json_string_bytes(const char *s)
{
	int			bytes = 2;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p == '\b' || *p == '\f' || *p == '\n' || *p == '\r' ||
			*p == '\t' || *p == '"' || *p == '\\')
			bytes += 2;
		else if (*p < ' ')
			bytes += 6;			/* \u00XX */
		else
			bytes++;
	}
	return bytes;
}

/* Decimal digits of a number, with its sign. */
static int
decimal_bytes(int64 n)
{
	char		digits[MAXINT8LEN + 1];

	return snprintf(digits, sizeof(digits), INT64_FORMAT, n);
}

/*
 * The bytes of the longest diff this entry can produce: the status kind
 * (the longest name) with the widest seq, its epoch and a signature.  Counted as presence_encode_diff
 * would write it, without building it: the table's CHECK asks on every
 * write.
 */
static int
longest_diff_bytes(const PresenceEntry *entry)
{
	int			topic_bytes = strlen(entry->topic);
	int			dtopic_chars = strlen(PRESENCE_DIFF_TOPIC_PREFIX) +
		pg_mbstrlen_with_len(entry->topic, topic_bytes);

	return decimal_bytes(dtopic_chars) + 1 +
		strlen(PRESENCE_DIFF_TOPIC_PREFIX) + topic_bytes +
		strlen("{\"kind\":\"status\",\"topic\":") + json_string_bytes(entry->topic) +
		strlen(",\"principal\":") + json_string_bytes(entry->principal_id) +
		strlen(",\"ekind\":") + json_string_bytes(entry->kind) +
		strlen(",\"agent_id\":") + json_string_bytes(entry->agent_id) +
		strlen(",\"fd\":") + decimal_bytes(entry->fd) +
		strlen(",\"since\":") + decimal_bytes(entry->since_ts) +
		strlen(",\"state\":") + json_string_bytes(entry->status_state) +
		strlen(",\"note\":") + json_string_bytes(entry->status_note) +
		strlen(",\"until_ts\":") + decimal_bytes(entry->status_until) +
		strlen(",\"seq\":") + PRESENCE_SEQ_MAX_DIGITS +
		strlen(",\"worker_id\":") + json_string_bytes(entry->worker_id) +
		strlen(",\"meta\":") + strlen(entry->meta) +
		PRESENCE_DIFF_TAIL_BYTES + 1;
}

/*
 * ERROR unless every diff this entry can produce fits NOTIFY.  Lets track
 * refuse before it changes anything, and tep_presence's CHECK refuse any
 * row that could not leave.
 */
void
presence_check_diff_fits(const PresenceEntry *entry)
{
	int			bytes = longest_diff_bytes(entry);

	if (bytes >= PRESENCE_NOTIFY_MAX_BYTES)
		diff_too_long(bytes);
}

/*
 * The channel of a topic's diffs in topic delivery, into `channel`
 * (NAMEDATALEN bytes): "presence:<topic>" when that is a valid channel
 * name (topics of up to 54 bytes), else "presence#" + the first 128 bits
 * of the topic's SHA-256 in hex + ":" + as much of the topic as fits, cut
 * at a character boundary.  The two forms cannot meet ('#' vs ':'), and
 * two long topics share a channel only if their SHA-256s share 128 bits.
 */
void
presence_topic_channel(const char *topic, char *channel)
{
	int			topic_bytes = strlen(topic);
	int			readable = strlen(PRESENCE_DIFF_TOPIC_PREFIX);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx;
	int			len;

	if (readable + topic_bytes < NAMEDATALEN)
	{
		snprintf(channel, NAMEDATALEN, PRESENCE_DIFF_TOPIC_PREFIX "%s", topic);
		return;
	}

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) topic, topic_bytes) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "presence: could not hash topic: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);

	len = snprintf(channel, NAMEDATALEN, "presence#");
	for (int i = 0; i < 16; i++)
		len += snprintf(channel + len, NAMEDATALEN - len, "%02x", digest[i]);
	channel[len++] = ':';
	topic_bytes = pg_mbcliplen(topic, topic_bytes, NAMEDATALEN - 1 - len);
	memcpy(channel + len, topic, topic_bytes);
	channel[len + topic_bytes] = '\0';
}
