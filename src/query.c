/*
 * query.c
 *		Queries against the extension's tables, prepared once per backend
 *		and kept with SPI_keepplan.
 *
 * Query texts name every table with the extension's schema, so neither a
 * caller's search_path nor a temp table can redirect them.  The schema is
 * looked up once; when the relcache says one of our tables changed (DROP
 * and CREATE EXTENSION, possibly in another schema), every plan is
 * prepared again on its next use.
 */
#include "presence.h"
#include "compat.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#define PRESENCE_TABLE_COUNT 4

static const char *const presence_table_names[PRESENCE_TABLE_COUNT] = {
	"tep_presence", "tep_presence_worker", "presence_topic_seq",
	"presence_ended_worker"
};

static char *schema_prefix = NULL;
static const char *meta_column = "";	/* %2$s of query texts */
static const char *meta_param = "";	/* %3$s: track's meta, $10 */
static Oid	extension_oid = InvalidOid;
static Oid	tables_owner = InvalidOid;
static Oid	table_oids[PRESENCE_TABLE_COUNT];
static AttrNumber owner_attnum = InvalidAttrNumber;
static uint64 plan_generation = 1;

/* Whether tep_presence has 1.1's meta column (valid with the schema). */
bool		presence_has_meta = false;
static bool callback_registered = false;

/*
 * Relcache callback: forget the schema and age every plan when one of our
 * tables (or the whole relcache) is invalidated.
 */
static void
presence_relcache_callback(Datum arg, Oid relid)
{
	bool		ours = (relid == InvalidOid);

	for (int i = 0; i < PRESENCE_TABLE_COUNT && !ours; i++)
		ours = (table_oids[i] == relid);
	if (!ours || schema_prefix == NULL)
		return;

	pfree(schema_prefix);
	schema_prefix = NULL;
	plan_generation++;
}

/*
 * True when the extension exists in the current database, and then it stays
 * until the transaction ends: DROP EXTENSION first locks the extension
 * exclusively, so it waits for our share lock, or we wait for it to commit
 * and see the extension gone.  Without the lock a DROP could commit between
 * the check and our first query.
 */
bool
presence_lock_extension(void)
{
	Oid			extension_oid = get_extension_oid("presence", true);

	if (!OidIsValid(extension_oid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
	return get_extension_oid("presence", true) == extension_oid;
}

#if PG_VERSION_NUM < 160000
/*
 * The extension's schema; PostgreSQL exports this lookup from version 16.
 */
static Oid
get_extension_schema(Oid extension_oid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension_oid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return schema;
}
#endif

static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "presence: table %u of the extension not found", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Look up the extension's schema, table oids and owner.
 */
static void
presence_lookup_schema(void)
{
	Oid			namespace_oid;
	char	   *namespace_name;

	extension_oid = get_extension_oid("presence", false);
	namespace_oid = get_extension_schema(extension_oid);
	namespace_name = get_namespace_name(namespace_oid);
	if (namespace_name == NULL)
		elog(ERROR, "schema of extension \"presence\" not found");

	for (int i = 0; i < PRESENCE_TABLE_COUNT; i++)
		table_oids[i] = get_relname_relid(presence_table_names[i],
										  namespace_oid);
	presence_has_meta = OidIsValid(table_oids[PRESENCE_ENTRIES]) &&
		get_attnum(table_oids[PRESENCE_ENTRIES], "meta") != InvalidAttrNumber;
	meta_column = presence_has_meta ? ", meta" : "";
	meta_param = presence_has_meta ? ", $10" : "";
	owner_attnum = get_attnum(table_oids[PRESENCE_WORKERS], "owner");
	tables_owner = relation_owner(table_oids[PRESENCE_ENTRIES]);

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(presence_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	schema_prefix = MemoryContextStrdup(TopMemoryContext,
										quote_identifier(namespace_name));
}

/*
 * The role that owns the extension's tables: the functions act as it.
 */
Oid
presence_owner(void)
{
	if (schema_prefix == NULL)
		presence_lookup_schema();
	return tables_owner;
}

/*
 * Whether the extension is gone (dropped in this transaction, at commit
 * time).  A DROP invalidates our tables, so while the schema is still
 * known the catalog need not be read.
 */
bool
presence_extension_dropped(void)
{
	return schema_prefix == NULL &&
		!OidIsValid(get_extension_oid("presence", true));
}

/*
 * The extension's oid, which DROP and CREATE EXTENSION change.
 */
Oid
presence_extension_oid(void)
{
	if (schema_prefix == NULL)
		presence_lookup_schema();
	return extension_oid;
}

/*
 * The oid of one of the extension's tables.
 */
Oid
presence_table(PresenceTable which)
{
	if (schema_prefix == NULL)
		presence_lookup_schema();
	return table_oids[which];
}

/*
 * The column number of tep_presence_worker.owner, or InvalidAttrNumber
 * while the installation is still at 1.0 (the library is upgraded before
 * ALTER EXTENSION UPDATE): then workers have no owners, as in 1.0.
 */
AttrNumber
presence_worker_owner_attnum(void)
{
	if (schema_prefix == NULL)
		presence_lookup_schema();
	return owner_attnum;
}

/*
 * Find a row of tep_presence_worker or presence_topic_seq by its text key,
 * straight through the primary key `index`, into `slot`.  For the lookups
 * of the hot path, where a statement would cost far more than the probe.
 */
bool
presence_find_by_key(Relation rel, Relation index, const char *key,
					 Snapshot snapshot, TupleTableSlot *slot)
{
	ScanKeyData scan_key;

	ScanKeyEntryInitialize(&scan_key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(key));
	return presence_find_by_scan_keys(rel, index, &scan_key, 1, snapshot,
									  slot);
}

/*
 * The first row `index` finds for the equality `keys`, into `slot`.
 */
bool
presence_find_by_scan_keys(Relation rel, Relation index, ScanKey keys,
						   int nkeys, Snapshot snapshot, TupleTableSlot *slot)
{
	IndexScanDesc scan;
	bool		found;

	scan = presence_index_beginscan(rel, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}

/*
 * The query's plan, prepared on first use (and after an invalidation).
 * Its text's %1$s is the schema, %2$s and %3$s the meta column and
 * parameter where the installation has them (PRESENCE_ENTRY_COLUMNS).
 */
static SPIPlanPtr
presence_plan(PresenceQuery *query)
{
	char	   *sql;
	SPIPlanPtr	plan;

	if (query->plan != NULL && query->generation == plan_generation)
		return query->plan;

	if (query->plan != NULL)
	{
		SPI_freeplan(query->plan);
		query->plan = NULL;
	}
	if (schema_prefix == NULL)
		presence_lookup_schema();

	sql = psprintf(query->sql, schema_prefix, meta_column, meta_param);
	plan = SPI_prepare_cursor(sql, query->nargs, (Oid *) query->argtypes,
							  query->cursor_options);
	if (plan == NULL)
		elog(ERROR, "presence: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "presence: SPI_keepplan failed");
	pfree(sql);

	query->plan = plan;
	query->generation = plan_generation;
	return plan;
}

/*
 * Connect to SPI; every caller pairs it with SPI_finish.  First the
 * extension is locked for the rest of the transaction, as in
 * presence_lock_extension: a DROP EXTENSION that committed before the lock
 * was granted has invalidated our tables by then (taking a lock reads the
 * invalidations), so the lookup that follows reports the extension
 * missing instead of a table OID that no longer exists.
 */
void
presence_spi_connect(void)
{
	if (schema_prefix == NULL)
		presence_lookup_schema();
	LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
	if (schema_prefix == NULL)
		presence_lookup_schema();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "presence: SPI_connect failed");
}

/*
 * Execute the query's kept plan; returns the SPI result code.
 */
int
presence_execute(PresenceQuery *query, Datum *values, const char *nulls,
				 bool read_only, long count)
{
	int			rc;

	rc = SPI_execute_plan(presence_plan(query), values, nulls, read_only,
						  count);
	if (rc < 0)
		elog(ERROR, "presence: query failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * Open a read-only cursor on the query's kept plan, with no nulls among
 * `values`, for a caller that reads a large result a batch at a time.
 */
Portal
presence_open_cursor(PresenceQuery *query, Datum *values)
{
	Portal		portal;

	portal = SPI_cursor_open(NULL, presence_plan(query), values, NULL, true);
	if (portal == NULL)
		elog(ERROR, "presence: SPI_cursor_open failed: %s",
			 SPI_result_code_string(SPI_result));
	return portal;
}

/*
 * Return the rows of a read-only query as the calling set-returning
 * function's result (its tuple descriptor is the query's).
 */
void
presence_return_rows(FunctionCallInfo fcinfo, PresenceQuery *query,
					 Datum *values)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	presence_spi_connect();
	presence_execute(query, values, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	SPI_finish();
}
