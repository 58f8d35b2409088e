-- Capture through pg_temp: every function of presence and presence_proxy
-- (whichever this database has), called by a role whose pg_temp holds a
-- domain over every type the functions name and temp tables named like the
-- catalogs and tables they read.  pg_temp is searched first for types and
-- tables unless a search_path lists it, so a function that resolved one of
-- these names there would run the domain's CHECK (pg_temp.pwn) with its
-- own rights, or read the fake table.  Any capture is a row of
-- pg_temp.captured, naming the function.  The shard suite runs this file
-- on the proxy too (test/shards/run.sh).
SET client_min_messages = warning;
CREATE ROLE regress_captor LOGIN;
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE e.extname IN ('presence', 'presence_proxy')
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO regress_captor', f);
    END LOOP;
    IF EXISTS (SELECT FROM pg_catalog.pg_foreign_server WHERE srvname = 'presence') THEN
        GRANT USAGE ON SCHEMA presence_proxy TO regress_captor;
        GRANT USAGE ON FOREIGN SERVER presence TO regress_captor;
    END IF;
END
$$;
SET ROLE regress_captor;
SELECT presence_worker_start('cap-w', '1 hour') AS worker;
SELECT presence_track('cap:t', 1, 'u') AS tracked;
CREATE TEMP TABLE captured (fn pg_catalog.text, who pg_catalog.text, what pg_catalog.text);
CREATE FUNCTION pg_temp.pwn(v anyelement) RETURNS pg_catalog.bool LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.captured VALUES (pg_catalog.current_setting('cap.fn', true),
        CURRENT_USER::pg_catalog.text, 'a pg_temp domain');
    RETURN true;
END
$$;
CREATE TEMP TABLE pg_foreign_server (oid pg_catalog.oid, srvname pg_catalog.name, srvoptions pg_catalog.text[]);
INSERT INTO pg_temp.pg_foreign_server VALUES (1, 'presence', '{partition_0=host=evil}');
CREATE TEMP TABLE tep_presence (x pg_catalog.int4);
CREATE TEMP TABLE tep_presence_worker (x pg_catalog.int4);
CREATE TEMP TABLE presence_topic_seq (x pg_catalog.int4);
CREATE TEMP TABLE presence_history (x pg_catalog.int4);
-- One block: its own variables are resolved before the domains exist.
DO $$
DECLARE
    t pg_catalog.text;
    p record;
    args pg_catalog.text;
    result pg_catalog.text;
BEGIN
    -- every base type the functions' arguments and results name, and the
    -- ones their bodies name
    FOR t IN
        SELECT DISTINCT ty.typname::pg_catalog.text
          FROM pg_catalog.pg_proc pr
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid = pr.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_type ty
            ON ty.oid = ANY (pr.proargtypes::pg_catalog.oid[] OPERATOR(pg_catalog.||) pr.prorettype)
         WHERE e.extname IN ('presence', 'presence_proxy') AND ty.typtype = 'b'
           AND ty.typcategory <> 'A'
        UNION
        SELECT pg_catalog.unnest('{text,int4,int8,int2,bool,jsonb,json,interval,timestamptz,oid,regrole,regclass,name,tid,float8,numeric,varchar}'::pg_catalog.text[])
    LOOP
        EXECUTE pg_catalog.format('CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (pg_temp.pwn(VALUE))', t, t);
    END LOOP;
    FOR p IN
        SELECT pr.oid::pg_catalog.regprocedure AS f,
               pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                 OPERATOR(pg_catalog.||) pg_catalog.quote_ident(pr.proname) AS name,
               pr.proargtypes::pg_catalog.oid[] AS types,
               pr.proargnames AS names
          FROM pg_catalog.pg_proc pr
          JOIN pg_catalog.pg_namespace n ON n.oid = pr.pronamespace
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid = pr.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE e.extname IN ('presence', 'presence_proxy') AND pr.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
         ORDER BY pr.proname OPERATOR(pg_catalog.~) '(stop|clear|untrack)', 2, 1
    LOOP
        SELECT pg_catalog.string_agg(CASE
                 WHEN ty = 'pg_catalog.text'::pg_catalog.regtype THEN
                   CASE WHEN p.names[i] = 'worker_id' THEN '''cap-w''::pg_catalog.text'
                        WHEN p.names[i] = 'kind' THEN '''human''::pg_catalog.text'
                        WHEN p.names[i] = 'state' THEN '''busy''::pg_catalog.text'
                        WHEN p.names[i] = 'agent_id' THEN '''''::pg_catalog.text'
                        ELSE '''cap:t''::pg_catalog.text' END
                 WHEN ty = 'pg_catalog.int4'::pg_catalog.regtype THEN '1::pg_catalog.int4'
                 WHEN ty = 'pg_catalog.int8'::pg_catalog.regtype THEN '0::pg_catalog.int8'
                 WHEN ty = 'pg_catalog.jsonb'::pg_catalog.regtype THEN '''{}''::pg_catalog.jsonb'
                 WHEN ty = 'pg_catalog.interval'::pg_catalog.regtype THEN '''1 hour''::pg_catalog.interval'
                 ELSE pg_catalog.format('NULL::%s', ty::pg_catalog.regtype) END, ', ' ORDER BY i)
          INTO args
          FROM pg_catalog.unnest(p.types) WITH ORDINALITY AS a(ty, i);
        PERFORM pg_catalog.set_config('cap.fn', p.f::pg_catalog.text, false);
        BEGIN
            EXECUTE pg_catalog.format('SELECT pg_catalog.string_agg(r::pg_catalog.text, '','') FROM %s(%s) r',
                                      p.name, coalesce(args, '')) INTO result;
            IF result OPERATOR(pg_catalog.~) 'evil' THEN
                INSERT INTO pg_temp.captured VALUES (p.f::pg_catalog.text, CURRENT_USER::pg_catalog.text,
                                                     'the temp pg_foreign_server');
            END IF;
        EXCEPTION WHEN OTHERS THEN
            NULL;   -- a refusal is an answer; only a capture counts
        END;
    END LOOP;
END
$$;
-- Every function was called ...
SELECT pg_catalog.count(*) > 20 AS functions_called
  FROM pg_catalog.pg_proc pr JOIN pg_catalog.pg_depend d
    ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = pr.oid AND d.deptype = 'e'
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
 WHERE e.extname IN ('presence', 'presence_proxy');
-- ... and none was captured.
SELECT fn, who, what FROM pg_temp.captured ORDER BY 1, 3;
RESET ROLE;
DROP OWNED BY regress_captor;
DROP ROLE regress_captor;
