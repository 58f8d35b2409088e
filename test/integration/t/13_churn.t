# Churn, twice: with presence.delivery = broadcast (every listener on
# tep_broadcast) and, after a reload, topic (every listener on each topic's
# own channel, and on tep_broadcast, which must then stay silent).
# 4 writers run random multi-topic transactions for a few seconds,
# in random topic order, at READ COMMITTED, REPEATABLE READ and
# SERIALIZABLE, some rolled back whole, some with a savepoint rolled back,
# with untrack_by_fd among the operations.  Two listeners follow every
# topic by snapshot + diffs; one drops its connection half-way and resyncs.
# No writer may see an error (a serialization failure at SERIALIZABLE is
# retried and counted; none other is allowed), no deadlock; no listener may
# see a seq gap or repeat; and at the end each listener's view of every
# topic equals presence_list_global.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(sum);
use JSON::PP;
use PresenceTest;

presence_node();

connect_db()->do(q{CREATE EXTENSION IF NOT EXISTS presence});

my $WRITERS = 4;
my $SECONDS = $ENV{PRESENCE_CHURN_SECONDS} // 6;
my @TOPICS = map { "churn:$_" } 1 .. 8;
my $admin = connect_db();
my $stop = state_dir() . "/churn-stop";
my $MODE;

# A listener that keeps, per topic, the entries a snapshot gave and the
# diffs after it applied; seq must go last + 1 after the snapshot's.
package ChurnView;
sub new {
	my ($class, %o) = @_;
	my $self = bless { name => $o{name}, gaps => 0, repeats => 0, applied => 0, broadcast => 0 },
	  $class;
	$self->resync;
	return $self;
}
sub resync {
	my ($self) = @_;
	$self->{l} = PresenceTest::Listener->new;
	my $dbh = $self->{l}->dbh;
	if ($MODE eq 'topic') {
		$dbh->do('LISTEN ' . $dbh->quote_identifier(
			$dbh->selectrow_array('SELECT presence_channel(?)', undef, $_))) for @TOPICS;
	}
	for my $t (@TOPICS) {
		my $snap = JSON::PP->new->decode($dbh->selectrow_array('SELECT presence_snapshot(?)', undef, $t));
		$self->{seq}{$t} = $snap->{seq};
		$self->{floor}{$t} = $snap->{seq};
		$self->{entries}{$t} = { map { ("$_->{worker_id}/$_->{fd}" => "$_->{principal}|$_->{state}|$_->{note}") }
			  @{ $snap->{entries} } };
	}
}
sub apply {
	my ($self, $timeout) = @_;
	$self->{l}->pump($timeout // 0);
	for my $item (@{ $self->{l}{queue} }) {
		my $d = PresenceTest::diff_of($item);
		my $t = $d->{topic};
		next unless exists $self->{seq}{$t};
		if ($MODE eq 'topic' && $item->{channel} eq 'tep_broadcast') {
			$self->{broadcast}++;
			next;
		}
		if ($d->{seq} <= $self->{seq}{$t}) {
			$self->{repeats}++ if $d->{seq} > $self->{floor}{$t};
			next;
		}
		$self->{gaps}++ if $d->{seq} != $self->{seq}{$t} + 1;
		$self->{seq}{$t} = $d->{seq};
		my $key = "$d->{worker_id}/$d->{fd}";
		if ($d->{kind} eq 'leave') { delete $self->{entries}{$t}{$key} }
		else { $self->{entries}{$t}{$key} = "$d->{principal}|$d->{state}|$d->{note}" }
		$self->{applied}++;
	}
	$self->{l}{queue} = [];
}
sub disconnect { $_[0]{l}->dbh->disconnect }
package main;

sub run_churn {
	unlink $stop;
	my $steady = ChurnView->new(name => 'steady');
	my $flaky = ChurnView->new(name => 'reconnecting');

	# Writers: each is its own leased worker (its own rows: the only row
	# conflicts would be ones plain SQL has too), fds 1..6.
	my @kids;
	for my $w (1 .. $WRITERS) {
		pipe(my $r, my $wr) or die;
		my $pid = fork // die;
		if ($pid == 0) {
			close $r;
			srand($w * 7919);
			my $dbh = connect_db();
			$dbh->{RaiseError} = 1;
			my $wid = "churn-w$w";
			$dbh->do(q{SELECT presence_worker_start(?, '1 hour')}, undef, $wid);
			my %n = map { $_ => 0 } qw(commits rollbacks savepoints retries errors deadlocks);
			my $first = '';
			my @levels = ('READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE');
			while (!-e $stop) {
				my $level = $levels[int rand 3];
				my @ops = map { random_op($wid) } 1 .. 1 + int rand 4;
				my $savepoint = rand() < 0.25 ? int rand @ops : -1;
				my $rollback = rand() < 0.15;
				my $ok = eval {
					$dbh->begin_work;
					$dbh->do("SET TRANSACTION ISOLATION LEVEL $level");
					for my $i (0 .. $#ops) {
						if ($i == $savepoint) {
							$dbh->do('SAVEPOINT s');
							$dbh->selectall_arrayref(@{ $ops[$i] });
							$dbh->selectall_arrayref(@{ random_op($wid) });
							$dbh->do('ROLLBACK TO SAVEPOINT s');
							$n{savepoints}++;
						}
						$dbh->selectall_arrayref(@{ $ops[$i] });
					}
					if ($rollback) { $dbh->rollback; $n{rollbacks}++ }
					else { $dbh->commit; $n{commits}++ }
					1;
				};
				next if $ok;
				my $state = $dbh->state // '';
				my $err = $@;
				eval { $dbh->rollback unless $dbh->{AutoCommit} };
				if ($state eq '40001') { $n{retries}++; next }
				$n{deadlocks}++ if $state eq '40P01';
				$n{errors}++;
				$first ||= "$state $err";
			}
			print $wr join(' ', map { "$_=$n{$_}" } sort keys %n), "\n$first\n";
			close $wr;
			child_exit(0);
		}
		close $wr;
		push @kids, [$pid, $r];
	}

	sub random_op {
		my ($wid) = @_;
		my $t = $TOPICS[int rand @TOPICS];
		my $fd = 1 + int rand 6;
		my $r = rand;
		return [q{SELECT presence_track(?, ?, ?, worker_id => ?)}, undef, $t, $fd, "u$fd", $wid] if $r < 0.4;
		return [q{SELECT presence_set_status(?, ?, 'busy', ?, 0, ?)}, undef, $t, $fd, "n" . int(rand 1000), $wid]
		  if $r < 0.6;
		return [q{SELECT presence_untrack(?, ?, ?)}, undef, $t, $fd, $wid] if $r < 0.85;
		return [q{SELECT presence_untrack_by_fd(?, ?)}, undef, $fd, $wid];
	}

	my $end = time + $SECONDS;
	my $reconnected = 0;
	while (time < $end) {
		$steady->apply(0.05);
		$flaky->apply(0);
		if (!$reconnected && time > $end - $SECONDS / 2) {
			$flaky->disconnect;
			$flaky->resync;
			$reconnected = 1;
		}
	}
	open my $fh, '>', $stop or die;
	close $fh;
	my (%total, @firsts);
	for my $k (@kids) {
		my ($pid, $r) = @$k;
		my $line = <$r>;
		my $first = <$r>;
		waitpid $pid, 0;
		chomp($line, $first) if defined $first;
		for (split ' ', $line // '') { my ($k, $v) = split /=/; $total{$k} += $v }
		push @firsts, $first if defined $first && $first ne '';
	}
	diag(join ' ', map { "$_=$total{$_}" } sort keys %total);
	cmp_ok($total{commits}, '>', 100, "$MODE: the writers committed transactions");
	cmp_ok($total{rollbacks}, '>', 0, '  and rolled some back');
	cmp_ok($total{savepoints}, '>', 0, '  and rolled back to savepoints');
	is($total{errors}, 0, 'no writer saw an error') or diag("first: $_") for @firsts;
	is($total{deadlocks}, 0, 'no deadlock');

	# Let the last diffs arrive, then compare each view with the table.
	for (1 .. 10) { $steady->apply(0.05); $flaky->apply(0.05) }
	for my $v ($steady, $flaky) {
		is($v->{gaps}, 0, "$MODE, $v->{name} listener: no seq gap");
		is($v->{repeats}, 0, "$MODE, $v->{name} listener: no seq repeated");
		is($v->{broadcast}, 0, "$MODE, $v->{name} listener: nothing on tep_broadcast") if $MODE eq 'topic';
		my $diff = 0;
		for my $t (@TOPICS) {
			my $rows = $admin->selectall_arrayref(q{SELECT worker_id || '/' || fd,
			               principal_id || '|' || status_state || '|' || status_note
			             FROM presence_list_global(?)}, undef, $t);
			my %want = map { $_->[0] => $_->[1] } @$rows;
			my $got = $v->{entries}{$t};
			$diff++ if join(',', map { "$_=$want{$_}" } sort keys %want)
			  ne join(',', map { "$_=$got->{$_}" } sort keys %$got);
			$diff++ if $v->{seq}{$t} != ($admin->selectrow_array(
				q{SELECT (presence_snapshot(?) ->> 'seq')::bigint}, undef, $t));
		}
		is($diff, 0, "$MODE, $v->{name} listener: every topic's view equals presence_list_global, at its seq");
		diag("$MODE, $v->{name}: $v->{applied} diffs applied");
	}
	ok($reconnected, 'the reconnecting listener did reconnect');

	$admin->do(q{SELECT presence_worker_stop('churn-w' || g) FROM generate_series(1, ?) g}, undef, $WRITERS);
	$admin->do(q{DELETE FROM presence_topic_seq WHERE topic LIKE 'churn:%'});
	unlink $stop;
}

run_churn() for $MODE = 'broadcast';

# Topic delivery from the next transactions on, after a reload.
set_gucs($admin, 'presence.delivery' => 'topic');
my $deadline = time + 5;
sleep 0.05 while time < $deadline
  && connect_db()->selectrow_array('SHOW presence.delivery') ne 'topic';
run_churn() for $MODE = 'topic';
reset_gucs($admin, 'presence.delivery');

server_log_ok();
done_testing();
