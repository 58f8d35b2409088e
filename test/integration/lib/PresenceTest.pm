# Helpers shared by the integration tests: connections to the clusters
# run.sh started, a LISTEN connection that timestamps every diff as it
# arrives and decodes Tep's wire format, the server log, and timing.
package PresenceTest;

use strict;
use warnings;

use DBI;
use DBD::Pg;
use Exporter 'import';
use IO::Select;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
  connect_db connect_retry wait_disconnected dsn cluster_dir
  worker_pid wait_worker_pid set_gucs reset_gucs
  log_path log_offset log_since worker_log_problems
  decode_diff diff_of ms now_s
  spawn_client pg_ctl_as_postgres expiry_and_prune_work
  state_file_append state_file_lines
);

our @DIFF_KEYS = qw(kind topic principal ekind agent_id fd since state note
  until_ts seq worker_id);

my $json = JSON::PP->new;

# Cluster "main" (preloaded, run.sh's short intervals) or "second".
sub cluster_dir {
	my ($which) = @_;
	$which //= 'main';
	return $which eq 'main' ? $ENV{PRESENCE_MAIN_DIR} : $ENV{PRESENCE_SECOND_DIR};
}

sub cluster_port {
	my ($which) = @_;
	$which //= 'main';
	return $which eq 'main' ? $ENV{PRESENCE_MAIN_PORT} : $ENV{PRESENCE_SECOND_PORT};
}

sub dsn {
	my (%o) = @_;
	my $which = $o{cluster} // 'main';
	my $db = $o{db} // 'postgres';
	return sprintf('dbi:Pg:dbname=%s;host=%s/sock;port=%s', $db,
		cluster_dir($which), cluster_port($which));
}

# AutoInactiveDestroy: a forked child never closes its parent's sessions.
sub connect_db {
	my (%o) = @_;
	my $dbh = DBI->connect(dsn(%o), 'postgres', '',
		{ AutoCommit => 1, RaiseError => 1, PrintError => 0, PrintWarn => 0,
		  AutoInactiveDestroy => 1 })
	  or die "connect: $DBI::errstr";
	$dbh->do("SET application_name = 'presence-integ'");
	return $dbh;
}

# Connect, retrying while the server restarts (crash recovery).
sub connect_retry {
	my (%o) = @_;
	my $deadline = time + ($o{timeout} // 30);
	while (1) {
		my $dbh = eval { connect_db(%o) };
		return $dbh if $dbh;
		die $@ if time > $deadline;
		sleep 0.05;
	}
}

# Wait until the server has closed $dbh's session (a crash restart has
# begun): a connection made before that could be accepted and then killed
# by the same restart.
sub wait_disconnected {
	my ($dbh, $timeout) = @_;
	my $deadline = time + ($timeout // 10);
	while (time < $deadline) {
		return 1 unless eval { $dbh->do('SELECT 1'); 1 };
		sleep 0.01;
	}
	return 0;
}

sub ms { sprintf '%.0f', $_[0] * 1000 }
sub now_s { int(time) }

sub worker_pid {
	my ($dbh) = @_;
	my ($pid) = $dbh->selectrow_array(
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'presence worker'");
	return $pid;
}

sub wait_worker_pid {
	my ($dbh, $timeout, $not) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline) {
		my $pid = worker_pid($dbh);
		return $pid if $pid && (!$not || $pid != $not);
		sleep 0.02;
	}
	return undef;
}

# ALTER SYSTEM SET each name => value, then reload.
sub set_gucs {
	my ($dbh, %gucs) = @_;
	for my $name (sort keys %gucs) {
		$dbh->do("ALTER SYSTEM SET $name = " . $dbh->quote($gucs{$name}));
	}
	$dbh->do('SELECT pg_reload_conf()');
}

sub reset_gucs {
	my ($dbh, @names) = @_;
	$dbh->do("ALTER SYSTEM RESET $_") for @names;
	$dbh->do('SELECT pg_reload_conf()');
}

# Server log -------------------------------------------------------------

sub log_path { cluster_dir($_[0]) . '/server.log' }
sub log_offset { -s log_path($_[0]) // 0 }

sub log_since {
	my ($offset, $which) = @_;
	open my $fh, '<', log_path($which) or die "open log: $!";
	seek $fh, $offset // 0, 0;
	local $/;
	my $text = <$fh> // '';
	close $fh;
	return $text;
}

# Log lines of the presence worker (log_line_prefix '%m [%p] %b ') at
# WARNING or worse, plus any crash of a server process.
sub worker_log_problems {
	my ($text) = @_;
	return grep {
		/ presence worker (WARNING|ERROR|FATAL|PANIC):/
		  || /terminated by signal|was terminated|exited with exit code [^01]|PANIC/
	} split /\n/, $text;
}

# Diffs ------------------------------------------------------------------

# <N>:presence:<topic><json>: N counts the characters of the dtopic.
sub decode_diff {
	my ($raw) = @_;
	$raw =~ /^(\d+):/ or die "bad diff (no length): $raw";
	my $n = $1;
	my $rest = substr($raw, length($n) + 1);
	my $dtopic = substr($rest, 0, $n);
	my $body = substr($rest, $n);
	my $obj = $json->decode($body);
	$obj->{_n} = $n;
	$obj->{_dtopic} = $dtopic;
	$obj->{_json} = $body;
	return $obj;
}

# The decoded diff of a queued notification (decoded once).
sub diff_of {
	my ($item) = @_;
	$item->{diff} //= decode_diff($item->{raw});
	return $item->{diff};
}

# A client in a child process: connects, runs the statements, reports
# its backend pid, then waits to be killed.  Returns (child pid, backend pid).
sub spawn_client {
	my (@sql) = @_;
	pipe(my $r, my $w) or die "pipe: $!";
	my $child = fork // die "fork: $!";
	if ($child == 0) {
		close $r;
		my $dbh = connect_db();
		$dbh->do($_) for @sql;
		syswrite $w, "$dbh->{pg_pid}\n";
		close $w;
		sleep 1 while 1;
		exit 0;
	}
	close $w;
	my $line = <$r>;
	close $r;
	die "client failed to start" unless defined $line;
	chomp $line;
	return ($child, $line);
}

sub pg_ctl_as_postgres {
	my (@args) = @_;
	my $bindir = $ENV{PG_BINDIR};
	my @cmd = ("$bindir/pg_ctl", @args);
	unshift @cmd, qw(runuser -u postgres --) if $> == 0;
	# From /, which postgres can read (see _as_postgres in test/lib/cluster.sh).
	return system('sh', '-c', 'cd / && "$@" >/dev/null', 'sh', @cmd) == 0;
}

# The worker still does its job after a disruption (`when` names it in the
# assertions): on a new connection (`connect`: connect_db options), a
# status expiring in 1 s is reset within sweep_interval + 0.5 s, and once
# `admin` terminates the connection its entry leaves within 2 x
# sweep_interval; both seen by `listener`.  `start` registers the worker
# with presence_worker_start() first; otherwise the track does.
sub expiry_and_prune_work {
	my (%o) = @_;
	my ($l, $admin, $when, $topic, $fd) = @o{qw(listener admin when topic fd)};
	my $c = connect_db(%{ $o{connect} // {} });
	$c->selectrow_array('SELECT presence_worker_start()') if $o{start};
	$c->selectrow_array('SELECT presence_track(?, ?, ?)', undef, $topic, $fd, "user:$fd");
	my $wid = $admin->selectrow_array('SELECT worker_id FROM tep_presence_worker WHERE backend_pid = ?',
		undef, $c->{pg_pid});
	my $until = now_s() + 1;
	$c->selectrow_array(q{SELECT presence_set_status(?, ?, 'busy', '', ?)}, undef, $topic, $fd, $until);
	my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'status', worker_id => $wid, fd => $fd,
			state => 'available'), $until + 0.7 + 1 - time);
	ok($r, "$when expiry works") and do {
		diag(sprintf 'reset latency %s ms (%s)', ms($r->{t} - $until), $when);
		cmp_ok($r->{t} - $until, '<=', 0.7, '  within sweep_interval + 0.5 s');
	};
	my $t0 = time;
	$admin->selectrow_array('SELECT pg_terminate_backend(?)', undef, $c->{pg_pid});
	$r = $l->wait_for(PresenceTest::Listener::match(kind => 'leave', worker_id => $wid), 2);
	ok($r, "$when a terminated connection is pruned") and do {
		diag(sprintf 'leave latency %s ms (%s)', ms($r->{t} - $t0), $when);
		cmp_ok($r->{t} - $t0, '<=', 0.4, '  within 2 x sweep_interval');
	};
}

# State shared between test files (e.g. deliberate kills).
sub state_file_append {
	my ($name, $line) = @_;
	open my $fh, '>>', "$ENV{PRESENCE_STATE_DIR}/$name" or die "$name: $!";
	print $fh "$line\n";
	close $fh;
}

sub state_file_lines {
	my ($name) = @_;
	open my $fh, '<', "$ENV{PRESENCE_STATE_DIR}/$name" or return ();
	chomp(my @lines = <$fh>);
	close $fh;
	return @lines;
}

# A LISTEN connection on presence.channel (tep_broadcast). Every
# notification is queued with its arrival time; wait on the listener (not
# sleep) so arrival times stay exact.
package PresenceTest::Listener;

use strict;
use warnings;
use IO::Select;
use Time::HiRes qw(time);

sub new {
	my ($class, %o) = @_;
	my $self = bless { opts => \%o, queue => [], received => 0 }, $class;
	$self->connect;
	return $self;
}

sub connect {
	my ($self) = @_;
	my %o = %{ $self->{opts} };
	$self->{dbh} = $o{retry} ? PresenceTest::connect_retry(%o)
	  : PresenceTest::connect_db(%o);
	$self->{dbh}->do('LISTEN ' . ($o{channel} // 'tep_broadcast'));
	return $self;
}

sub dbh { $_[0]{dbh} }

# Read whatever has arrived, waiting up to $timeout seconds for something.
sub pump {
	my ($self, $timeout) = @_;
	my $dbh = $self->{dbh};
	my $sel = IO::Select->new($dbh->{pg_socket});
	my $got = 0;
	if ($sel->can_read($timeout // 0)) {
		my $t = time;
		while (my $n = $dbh->pg_notifies) {
			push @{ $self->{queue} }, { t => $t, raw => $n->[2], pid => $n->[1], channel => $n->[0] };
			$got++;
		}
	}
	$self->{received} += $got;
	return $got;
}

# Sleep for $secs while receiving.
sub pause {
	my ($self, $secs) = @_;
	my $end = time + $secs;
	while ((my $left = $end - time) > 0) {
		$self->pump($left);
	}
}

# Queued notifications matching $pred (removed from the queue), waiting up
# to $timeout s until $count matched.  Returns the matches, oldest first.
sub collect {
	my ($self, $pred, $count, $timeout) = @_;
	my $deadline = time + $timeout;
	my @got;
	while (1) {
		my @keep;
		for my $item (@{ $self->{queue} }) {
			if (@got < $count && $pred->($item)) { push @got, $item }
			else { push @keep, $item }
		}
		$self->{queue} = \@keep;
		last if @got >= $count;
		my $left = $deadline - time;
		last if $left <= 0;
		$self->pump($left);
	}
	return @got;
}

sub wait_for {
	my ($self, $pred, $timeout) = @_;
	my ($item) = $self->collect($pred, 1, $timeout);
	return $item;
}

# Drop everything received so far.
sub drain {
	my ($self) = @_;
	$self->pump(0.05);
	my @q = @{ $self->{queue} };
	$self->{queue} = [];
	return @q;
}

# Predicate helpers: match decoded diffs by fields.
sub match {
	my (%want) = @_;
	return sub {
		my ($item) = @_;
		my $d = PresenceTest::diff_of($item);
		for my $k (keys %want) {
			my $v = $d->{$k};
			return 0 unless defined $v;
			if (ref $want{$k} eq 'Regexp') { return 0 unless $v =~ $want{$k} }
			else { return 0 unless $v eq $want{$k} }
		}
		return 1;
	};
}

1;
