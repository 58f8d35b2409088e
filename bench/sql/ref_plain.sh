#!/bin/sh
# Prints the PL/pgSQL reference's three functions as ref.plain_presence_*:
# the same bodies without SECURITY DEFINER and SET search_path (invoker's
# rights, so an app role would need the table privileges, and an unsafe
# search_path could hijack them).  Only for the diagnostic side that shows
# what the SET clause costs the reference.
sed -n '/^-- presence_track: /,$p' "$(dirname "$0")/../plpgsql_reference.sql" |
	sed -e 's/\(presence_track\|presence_set_status\|presence_untrack\)\([.(]\)/plain_\1\2/g' \
		-e 's/^LANGUAGE plpgsql VOLATILE SECURITY DEFINER$/LANGUAGE plpgsql VOLATILE/' \
		-e '/^SET search_path = pg_catalog, pg_temp$/d'
