/*
 * batch.c
 *		1.1: many entries or topics in one call: presence_track_many,
 *		presence_set_status_many, presence_snapshot_many, and a large
 *		topic's snapshot as rows.
 *
 * presence_track_many and presence_set_status_many call presence_track
 * and presence_set_status element by element, so every rule of those
 * holds for each element (their caller, ownership and refusals too: the
 * two run as their caller, and each element's call acts as the owner for
 * that element only), and save the round trips and the commits;
 * presence_snapshot_many reads all its topics with two statements and
 * writes each snapshot as presence_snapshot does.
 * An element's bad input fails the whole call (its statement rolls back,
 * nothing is sent) with the element's index first in the message.
 */
#include "presence.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(presence_track_many);
PG_FUNCTION_INFO_V1(presence_set_status_many);

PGDLLEXPORT extern Datum presence_track(PG_FUNCTION_ARGS);
PGDLLEXPORT extern Datum presence_set_status(PG_FUNCTION_ARGS);

/* How an element's key becomes its function's argument. */
typedef enum ElementType
{
	ELEMENT_TEXT,				/* a JSON string */
	ELEMENT_INT4,				/* a JSON number, an integer */
	ELEMENT_INT8,
	ELEMENT_JSONB				/* any JSON (the function checks it) */
} ElementType;

typedef struct ElementArg
{
	const char *key;			/* NULL: the call's worker_id */
	ElementType type;
	const char *default_value;	/* as text; NULL: required */
} ElementArg;

/* A single function called for each element of a many-call's array. */
typedef struct ManyCall
{
	PGFunction	function;
	int			nargs;
	ElementArg	args[7];		/* the function's, in its order */
	const char *keys;			/* for the unknown key's error */
} ManyCall;

static const ManyCall track_many = {
	presence_track, 7,
	{{"topic", ELEMENT_TEXT}, {"fd", ELEMENT_INT4},
	 {"principal_id", ELEMENT_TEXT}, {"kind", ELEMENT_TEXT, "human"},
	 {"agent_id", ELEMENT_TEXT, ""}, {NULL}, {"meta", ELEMENT_JSONB, "{}"}},
	"An entry has topic, fd, principal_id, kind, agent_id and meta."
};

static const ManyCall set_status_many = {
	presence_set_status, 6,
	{{"topic", ELEMENT_TEXT}, {"fd", ELEMENT_INT4}, {"state", ELEMENT_TEXT},
	 {"note", ELEMENT_TEXT, ""}, {"until_ts", ELEMENT_INT8, "0"}, {NULL}},
	"A status has topic, fd, state, note and until_ts."
};

/* Entries streamed by presence_snapshot_rows are read this many at a time. */
#define SNAPSHOT_ROWS_FETCH 1000

static PresenceQuery rows_seq_query = {
	PRESENCE_TOPIC_SEQ, 1, {TEXTOID}
};

/* presence_snapshot's entries and order. */
static PresenceQuery rows_entries_query = {
	"SELECT " PRESENCE_ENTRY_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "$1"
	" ORDER BY since_ts, worker_id COLLATE pg_catalog.\"C\", fd",
	1, {TEXTOID}
};

/*
 * Call `fn` with `call`'s arguments; a bad-input error (classes 22 and 23)
 * comes out with "<what>[index]: " before its message, so that the caller
 * knows which element to fix.  Others (privileges, cancels) are the call's,
 * not the element's, and go out as they are.
 */
static Datum
call_for_element(PGFunction fn, FunctionCallInfo call, const char *what,
				 int index)
{
	MemoryContext caller_context = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		result = fn(call);
	}
	PG_CATCH();
	{
		ErrorData  *error;
		int			class;

		MemoryContextSwitchTo(caller_context);
		error = CopyErrorData();
		class = ERRCODE_TO_CATEGORY(error->sqlerrcode);
		if (class != ERRCODE_DATA_EXCEPTION &&
			class != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
			PG_RE_THROW();
		FlushErrorState();
		error->message = psprintf("%s[%d]: %s", what, index, error->message);
		ReThrowError(error);
	}
	PG_END_TRY();
	return result;
}

static void
bad_element(const char *what, int index, const char *message,
			const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s[%d]: %s", what, index, message),
			 detail ? errdetail("%s", detail) : 0));
}

static int
arg_of_key(const ManyCall *many, const char *key, int keylen)
{
	for (int arg = 0; arg < many->nargs; arg++)
		if (many->args[arg].key != NULL &&
			strlen(many->args[arg].key) == (size_t) keylen &&
			memcmp(many->args[arg].key, key, keylen) == 0)
			return arg;
	return -1;
}

/*
 * An integer from a JSON number, within int4's or int8's range (an error
 * naming the element otherwise, as every other bad key's).
 */
static Datum
integer_from_json(const JsonbValue *value, const ElementArg *arg,
				  const char *what, int index)
{
	char	   *text;
	char	   *end;
	long long	number;

	if (value->type != jbvNumeric)
		bad_element(what, index, psprintf("%s must be a JSON number", arg->key),
					NULL);
	text = DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(value->val.numeric)));
	errno = 0;
	number = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0 ||
		(arg->type == ELEMENT_INT4 &&
		 (number < PG_INT32_MIN || number > PG_INT32_MAX)))
		bad_element(what, index, psprintf("%s must be an integer", arg->key),
					psprintf("It is %s.", text));
	return arg->type == ELEMENT_INT4 ? Int32GetDatum((int32) number) :
		Int64GetDatum((int64) number);
}

static Datum
value_of_text(ElementType type, const char *text)
{
	switch (type)
	{
		case ELEMENT_TEXT:
			return CStringGetTextDatum(text);
		case ELEMENT_INT4:
			return Int32GetDatum(pg_strtoint32(text));
		case ELEMENT_INT8:
			return Int64GetDatum(pg_strtoint64(text));
		case ELEMENT_JSONB:
			break;
	}
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}

static Datum
value_of_json(const JsonbValue *value, const ElementArg *arg,
			  const char *what, int index)
{
	switch (arg->type)
	{
		case ELEMENT_INT4:
		case ELEMENT_INT8:
			return integer_from_json(value, arg, what, index);
		case ELEMENT_JSONB:
			return JsonbPGetDatum(JsonbValueToJsonb((JsonbValue *) value));
		case ELEMENT_TEXT:
			break;
	}
	if (value->type != jbvString)
		bad_element(what, index,
					psprintf("%s must be a JSON string", arg->key), NULL);
	return PointerGetDatum(cstring_to_text_with_len(value->val.string.val,
													value->val.string.len));
}

/*
 * Fill `call` with the function's arguments from one element of the
 * array: an object of its keys (those with a default optional; JSON null
 * is SQL NULL), and the call's worker.
 */
static void
args_from_element(const ManyCall *many, FunctionCallInfo call,
				  JsonbValue *element, const char *what, int index,
				  Datum worker_id, bool worker_id_null)
{
	JsonbIterator *it;
	JsonbIteratorToken token;
	JsonbValue	key;
	JsonbValue	value;

	if (element->type != jbvBinary ||
		!JsonContainerIsObject(element->val.binary.data))
		bad_element(what, index, "an element must be a JSON object", NULL);

	for (int arg = 0; arg < many->nargs; arg++)
	{
		const ElementArg *spec = &many->args[arg];

		call->args[arg].isnull = spec->key == NULL ? worker_id_null :
			spec->default_value == NULL;
		call->args[arg].value = spec->key == NULL ? worker_id :
			spec->default_value == NULL ? (Datum) 0 :
			value_of_text(spec->type, spec->default_value);
	}

	it = JsonbIteratorInit(element->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		int			arg;

		if (token != WJB_KEY)
			continue;
		arg = arg_of_key(many, key.val.string.val, key.val.string.len);
		if (arg < 0)
			bad_element(what, index,
						psprintf("unknown key \"%.*s\"", key.val.string.len,
								 key.val.string.val),
						many->keys);
		(void) JsonbIteratorNext(&it, &value, true);
		call->args[arg].isnull = value.type == jbvNull;
		if (value.type != jbvNull)
			call->args[arg].value = value_of_json(&value, &many->args[arg],
												  what, index);
	}
}

/*
 * Call many->function for each element of the JSON array at argument 0,
 * with the worker at argument 1, in one statement; returns for how many
 * it returned true.
 */
static int
call_for_each(FunctionCallInfo fcinfo, const ManyCall *many, const char *what)
{
	LOCAL_FCINFO(call, 7);
	Jsonb	   *elements;
	Datum		worker_id = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	int			count;
	int			changed = 0;
	MemoryContext element_context;
	MemoryContext caller_context;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
	elements = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(elements) || JB_ROOT_IS_SCALAR(elements))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON array of objects", what)));
	count = JB_ROOT_COUNT(elements);
	/* The call's worker, not an element's: checked once. */
	if (!PG_ARGISNULL(1))
		(void) presence_worker_arg(fcinfo, 1);

	element_context = AllocSetContextCreate(CurrentMemoryContext,
											"presence many-call element",
											ALLOCSET_DEFAULT_SIZES);
	caller_context = MemoryContextSwitchTo(element_context);
	InitFunctionCallInfoData(*call, fcinfo->flinfo, many->nargs,
							 fcinfo->fncollation, NULL, NULL);
	for (int i = 0; i < count; i++)
	{
		JsonbValue *element = getIthJsonbValueFromContainer(&elements->root, i);

		args_from_element(many, call, element, what, i, worker_id,
						  PG_ARGISNULL(1));
		call->isnull = false;
		if (DatumGetBool(call_for_element(many->function, call, what, i)))
			changed++;
		MemoryContextReset(element_context);
	}
	MemoryContextSwitchTo(caller_context);
	MemoryContextDelete(element_context);
	return changed;
}

/*
 * presence_track_many(entries jsonb, worker_id text): presence_track for
 * each element of the array entries, for one worker, in one statement;
 * returns how many were newly tracked.
 */
Datum
presence_track_many(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(call_for_each(fcinfo, &track_many, "entries"));
}

/*
 * presence_set_status_many(statuses jsonb, worker_id text):
 * presence_set_status for each element of the array statuses, for one
 * worker, in one statement; returns how many entries were found (and sent
 * a status diff).
 */
Datum
presence_set_status_many(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(call_for_each(fcinfo, &set_status_many, "statuses"));
}

/* A topic of presence_snapshot_many, with its snapshot's parts. */
typedef struct ManyTopic
{
	char		topic[PRESENCE_MAX_NAME_BYTES + 1]; /* hash key */
	int64		seq;
	StringInfoData entries;		/* its entries' objects, comma-separated */
} ManyTopic;

/* presence_topic_arg's checks, as a function call_for_element can run. */
static Datum
check_topic(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(presence_topic_arg(fcinfo, 0));
}

/*
 * The array's topics, each checked as presence_snapshot checks its topic,
 * into `topics` (as C strings); returns the table of the distinct ones.
 */
static HTAB *
many_topics(FunctionCallInfo fcinfo, char ***topics, int *count)
{
	LOCAL_FCINFO(call, 1);
	ArrayType  *array;
	Datum	   *elements;
	bool	   *nulls;
	HASHCTL		ctl;
	HTAB	   *table;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topics must not be NULL")));
	array = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topics must be a one-dimensional array")));
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
					  &elements, &nulls, count);

	ctl.keysize = sizeof(((ManyTopic *) NULL)->topic);
	ctl.entrysize = sizeof(ManyTopic);
	ctl.hcxt = CurrentMemoryContext;
	table = hash_create("presence_snapshot_many topics", Max(*count, 16), &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	InitFunctionCallInfoData(*call, NULL, 1, InvalidOid, NULL, NULL);
	*topics = palloc(Max(*count, 1) * sizeof(char *));
	for (int i = 0; i < *count; i++)
	{
		ManyTopic  *entry;
		bool		found;

		call->args[0].value = elements[i];
		call->args[0].isnull = nulls[i];
		(*topics)[i] = DatumGetCString(call_for_element(check_topic, call,
														"topics", i));
		entry = hash_search(table, (*topics)[i], HASH_ENTER, &found);
		if (!found)
		{
			entry->seq = 0;
			initStringInfo(&entry->entries);
		}
	}
	return table;
}

/* The distinct topics as a text[], the queries' $1. */
static Datum
many_topics_array(HTAB *table)
{
	long		n = hash_get_num_entries(table);
	Datum	   *texts = palloc(Max(n, 1) * sizeof(Datum));
	HASH_SEQ_STATUS scan;
	ManyTopic  *entry;
	int			i = 0;

	hash_seq_init(&scan, table);
	while ((entry = hash_seq_search(&scan)) != NULL)
		texts[i++] = CStringGetTextDatum(entry->topic);
	return PointerGetDatum(construct_array(texts, i, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * Generic plans: a custom plan would estimate every element of a large
 * array; the generic one probes the primary key for each.
 */
static PresenceQuery floor_query = {
	"SELECT seq FROM %1$s.presence_topic_seq WHERE topic" EQ "''",
	0, {InvalidOid}
};

static PresenceQuery many_seqs_query = {
	"SELECT topic, seq FROM %1$s.presence_topic_seq"
	" WHERE topic" EQ "ANY ($1)",
	1, {TEXTARRAYOID}
};

/* presence_snapshot's entries and order, for many topics at once. */
static PresenceQuery many_entries_query = {
	"SELECT " PRESENCE_ENTRY_COLUMNS " FROM %1$s.tep_presence"
	" WHERE topic" EQ "ANY ($1)"
	" ORDER BY since_ts, worker_id COLLATE pg_catalog.\"C\", fd",
	1, {TEXTARRAYOID}
};

/*
 * Read every topic's seq and entries into `table` (its strings grown in
 * `table_context`): two statements, in the
 * statement's snapshot, as presence_snapshot reads one topic's.  The
 * entries come in presence_snapshot's order, so each topic's are too.
 */
static void
read_many(HTAB *table, MemoryContext table_context)
{
	Datum		topics = many_topics_array(table);
	MemoryContext row_context;
	HASH_SEQ_STATUS scan;
	ManyTopic  *entry;

	/* A topic without a row goes on from the floor (retention.c). */
	presence_execute(&floor_query, NULL, NULL, true, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;
		int64		floor = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc,
														1, &isnull));

		hash_seq_init(&scan, table);
		while ((entry = hash_seq_search(&scan)) != NULL)
			entry->seq = floor;
	}
	SPI_freetuptable(SPI_tuptable);

	presence_execute(&many_seqs_query, &topics, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *topic = SPI_getvalue(SPI_tuptable->vals[i],
										 SPI_tuptable->tupdesc, 1);

		entry = hash_search(table, topic, HASH_FIND, NULL);

		entry->seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												 SPI_tuptable->tupdesc, 2,
												 &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	row_context = AllocSetContextCreate(CurrentMemoryContext,
										"presence_snapshot_many row",
										ALLOCSET_DEFAULT_SIZES);
	presence_execute(&many_entries_query, &topics, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		PresenceEntry row;
		MemoryContext spi_context = MemoryContextSwitchTo(row_context);

		presence_entry_from_tuple(&row, SPI_tuptable->vals[i],
								  SPI_tuptable->tupdesc);
		entry = hash_search(table, row.topic, HASH_FIND, NULL);
		MemoryContextSwitchTo(table_context);
		if (entry->entries.len > 0)
			appendStringInfoChar(&entry->entries, ',');
		presence_append_snapshot_entry(&entry->entries, &row);
		MemoryContextSwitchTo(spi_context);
		MemoryContextReset(row_context);
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextDelete(row_context);
}

/*
 * presence_snapshot_many(topics text[]): presence_snapshot of each topic,
 * in the array's order, all read in the statement's one snapshot.
 */
PRESENCE_FUNCTION(presence_snapshot_many, false)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	  **topics;
	int			count;
	HTAB	   *table;
	MemoryContext table_context;
	const char *epoch;
	StringInfoData snapshot;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	table_context = CurrentMemoryContext;
	table = many_topics(fcinfo, &topics, &count);
	initStringInfo(&snapshot);

	presence_spi_connect();
	if (count > 0)
		read_many(table, table_context);
	epoch = MemoryContextStrdup(rsinfo->econtext->ecxt_per_query_memory,
								presence_current_epoch());
	SPI_finish();

	for (int i = 0; i < count; i++)
	{
		ManyTopic  *entry = hash_search(table, topics[i], HASH_FIND, NULL);
		Datum		value;
		bool		isnull = false;

		resetStringInfo(&snapshot);
		appendStringInfoString(&snapshot, "{\"topic\":");
		escape_json(&snapshot, entry->topic);
		appendStringInfo(&snapshot, ",\"seq\":" INT64_FORMAT ",\"entries\":[%s],\"epoch\":\"%s\"}",
						 entry->seq, entry->entries.data, epoch);
		value = PointerGetDatum(cstring_to_text_with_len(snapshot.data,
														 snapshot.len));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value,
							 &isnull);
		pfree(DatumGetPointer(value));
	}
	return (Datum) 0;
}

/*
 * One row of presence_snapshot_rows: (seq, epoch, entry); the tuplestore
 * keeps its own copy.
 */
static void
put_snapshot_row(ReturnSetInfo *rsinfo, int64 seq, Datum epoch,
				 StringInfo entry)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, entry == NULL};

	values[0] = Int64GetDatum(seq);
	values[1] = epoch;
	values[2] = entry ? PointerGetDatum(cstring_to_text_with_len(entry->data,
																 entry->len)) :
		(Datum) 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * presence_snapshot_rows(topic): the topic's snapshot as rows (seq, epoch,
 * entry): first one with entry NULL, then one per entry in
 * presence_snapshot's order, all read in one snapshot, every row carrying
 * the seq the whole belongs to.  The entries are read a batch at a time
 * and the rows go to a tuplestore, which spills to disk past work_mem: a
 * large topic never sits in memory whole.
 */
PRESENCE_FUNCTION(presence_snapshot_rows, false)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *topic = presence_topic_arg(fcinfo, 0);
	Datum		topic_datum = CStringGetTextDatum(topic);
	MemoryContext caller_context = CurrentMemoryContext;
	MemoryContext row_context;
	Datum		epoch;
	int64		seq = 0;
	Portal		cursor;
	StringInfoData entry_json;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	row_context = AllocSetContextCreate(caller_context,
										"presence_snapshot_rows row",
										ALLOCSET_DEFAULT_SIZES);

	presence_spi_connect();
	presence_execute(&rows_seq_query, &topic_datum, NULL, true, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}
	MemoryContextSwitchTo(caller_context);
	epoch = CStringGetTextDatum(presence_current_epoch());
	put_snapshot_row(rsinfo, seq, epoch, NULL);

	cursor = presence_open_cursor(&rows_entries_query, &topic_datum);
	for (;;)
	{
		SPI_cursor_fetch(cursor, true, SNAPSHOT_ROWS_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			PresenceEntry entry;
			MemoryContext spi_context = MemoryContextSwitchTo(row_context);

			presence_entry_from_tuple(&entry, SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc);
			initStringInfo(&entry_json);
			presence_append_snapshot_entry(&entry_json, &entry);
			put_snapshot_row(rsinfo, seq, epoch, &entry_json);
			MemoryContextReset(row_context);
			MemoryContextSwitchTo(spi_context);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(cursor);
	SPI_finish();
	MemoryContextDelete(row_context);
	return (Datum) 0;
}
